"""What `imgsearch doctor` found: the counts, the ids of each problem, and the lines a front end prints (every
PROBLEM line says what `--repair` does about it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DoctorReport:
    n_indexed: int
    n_pending: int
    n_qdrant: int
    n_faiss: int
    open_batches: int
    missing_in_qdrant: list[int] = field(default_factory=list)
    missing_in_faiss: list[int] = field(default_factory=list)
    orphans_in_qdrant: list[int] = field(default_factory=list)  # vectors with no catalogue row
    orphans_in_faiss: list[int] = field(default_factory=list)
    vector_mismatches: list[int] = field(default_factory=list)
    model_run_id: int | None = None  # the current models' training run
    models_problem: str | None = None  # the current models cannot be loaded: why
    stale_payloads: list[int] = field(default_factory=list)  # sampled points not predicted by the current models
    stale_catalogue: int = 0  # catalogue rows whose stored prediction is not the current models'
    cache_mismatches: list[int] = field(default_factory=list)  # --deep: cached vector is not its file's
    damaged_shards: list[Path] = field(default_factory=list)  # feature-cache shards that cannot be read
    changed_files: list[int] = field(default_factory=list)  # --deep: file bytes differ from the catalogued hash
    # sampled points whose catalogue-derived payload fields (label, path, curation fields...) differ from the row
    payload_mismatches: list[int] = field(default_factory=list)
    # sampled (with --deep: all) mirror points whose payload differs from the catalogue row or from Qdrant's
    mirror_payload_mismatches: list[int] = field(default_factory=list)
    payloads_compared: int = 0
    # points of removed images (the removal journal names them) still in a store: a removal cut short
    removed_still_stored: list[int] = field(default_factory=list)
    # catalogued, but with no vector for this backbone anywhere (store, mirror, feature cache): embedded only
    # with another backbone, or lost. Pending for this backbone; the next ingest of their folder embeds them.
    not_embedded: list[int] = field(default_factory=list)
    # near-duplicate groups named after a removed image, or down to one member: a removal cut short before it
    # regrouped them (catalogue and payloads agree, so no payload check sees it)
    dangling_groups: list[int] = field(default_factory=list)
    deep_files_missing: int = 0  # --deep: sampled files that no longer exist where the catalogue says
    deep_sampled: int = 0
    deep_checked: int = 0
    backbone: str = ""

    @property
    def consistent(self) -> bool:
        return not (self.missing_in_qdrant or self.missing_in_faiss or self.orphans_in_qdrant
                    or self.orphans_in_faiss or self.vector_mismatches or self.open_batches
                    or self.stale_payloads or self.stale_catalogue or self.cache_mismatches or self.damaged_shards
                    or self.payload_mismatches or self.mirror_payload_mismatches or self.removed_still_stored
                    or self.dangling_groups)

    def _problems(self) -> list[tuple[str, list[int], str]]:
        """(what is wrong, ids, what `--repair` does about it) for each id-level check."""
        return [
            ("in the catalogue but missing from Qdrant", self.missing_in_qdrant,
             "pushes them again from the feature cache or the FAISS mirror"),
            ("in the catalogue but missing from FAISS", self.missing_in_faiss, "copies them from Qdrant"),
            ("of removed images still in the stores (a removal was cut short)", self.removed_still_stored,
             "deletes them, finishing the removal"),
            ("in Qdrant with no catalogue row", self.orphans_in_qdrant,
             "catalogues them again from their payloads (--delete-orphans deletes them instead)"),
            ("in FAISS with no catalogue row", self.orphans_in_faiss,
             "catalogues them again from their payloads (--delete-orphans deletes them instead)"),
            ("with different vectors in Qdrant and FAISS", self.vector_mismatches, "copies Qdrant's into FAISS"),
            ("(of a sample) whose stored prediction or clusters are not the current models'", self.stale_payloads,
             "rewrites them with the current models"),
            ("whose cached feature vector is not their file's", self.cache_mismatches, "embeds their files again"),
            ("whose Qdrant payload fields (label, path, near-duplicate group, uniqueness, quality) differ from their "
             "catalogue row", self.payload_mismatches, "rewrites them from the catalogue in both stores"),
            ("whose FAISS mirror payload differs from the catalogue row or from Qdrant", self.mirror_payload_mismatches,
             "rewrites the mirror's from the catalogue and Qdrant"),
            ("naming near-duplicate groups left half-done by a removal (named after a removed image, or down to one "
             "member)", self.dangling_groups, "regroups their remaining members"),
        ]

    def lines(self) -> list[str]:
        models = (f"current models: training run {self.model_run_id}" if self.model_run_id is not None
                  else "current models: none (not trained yet for this backbone)")
        if self.models_problem and self.model_run_id is not None:
            models += " (cannot be loaded)"
        out = [
            f"backbone {self.backbone}",
            f"catalogue: {self.n_indexed} indexed images, {self.n_pending} pending (not yet in the vector stores)",
            f"Qdrant: {self.n_qdrant} points; FAISS mirror: {self.n_faiss} vectors",
            f"open journal batches (interrupted writes): {self.open_batches}",
            models,
        ]
        if self.models_problem:
            out.append(f"PROBLEM: the current models cannot be loaded: {self.models_problem}. --repair fits them "
                       "again from the cached features with the same parameters")
        for name, ids, fix in self._problems():
            if ids:
                shown = ", ".join(map(str, ids[:10])) + (" …" if len(ids) > 10 else "")
                out.append(f"PROBLEM: {len(ids)} ids {name}: {shown}. --repair {fix}")
        for shard in self.damaged_shards:
            out.append(f"PROBLEM: feature cache shard {shard} cannot be read: its images are embedded again when "
                       "they are next needed (a rebuild, a re-ingest). --repair moves it aside")
        if self.stale_catalogue:
            out.append(f"PROBLEM: {self.stale_catalogue} catalogue rows hold predictions from other models than "
                       "the current ones. --repair rewrites them with the current models")
        if self.not_embedded:
            out.append(f"note: {len(self.not_embedded)} catalogued images have no vector for this backbone yet "
                       "(embedded with another backbone only, or their vectors were lost): ingest their folder "
                       "with this backbone to embed them")
        if self.payloads_compared:
            out.append(f"payloads compared with the catalogue in both stores: {self.payloads_compared} points")
        if self.deep_sampled:
            present = self.deep_sampled - self.deep_files_missing
            out.append(f"deep check: {present} of {self.deep_sampled} sampled files still exist where the catalogue "
                       f"says; {self.deep_checked} re-read and re-embedded; {len(self.changed_files)} changed since "
                       "they were ingested (ingest their folder again to index the new content)")
            if present == 0:
                out.append("deep check: no sampled file exists any more: were the source folders moved? Nothing "
                           "could be compared with the files")
        out.append("all three stores agree" if self.consistent else "stores disagree: run `imgsearch doctor --repair`")
        return out
