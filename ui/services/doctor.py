"""`imgsearch doctor`: do the catalogue, Qdrant and the FAISS mirror agree — ids, vectors, and the current
models' predictions? `repair` makes them agree by rebuilding from whatever still holds the data; it never
deletes what it could rebuild from (deleting orphan vectors takes an explicit `delete_orphans`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import jobs
from imgsearch.db import repository as repo
from imgsearch.ingest import removals
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.ingest.pipeline import (
    close_dead_runs,
    predict,
    recover,
    refresh_payloads,
    store_payloads,
    sync_payloads,
)
from imgsearch.models.backbones import Backbone
from imgsearch.models.duplicates import DEFAULT_THRESHOLD
from imgsearch.models.trained import PREDICTION_FIELDS, TrainedModels, has_models, load_trained
from imgsearch.search.payload import payload_for
from imgsearch.search.stores import Stores

log = logging.getLogger(__name__)

# Payload fields copied from the catalogue row (time is left out: it is the row's, rewritten in its own format).
# The photo metadata too: points written before it was read (migration 0007) lack it, as their rows do, until an
# ingest of their folder fills both in.
CATALOGUE_FIELDS = ("path", "file_name", "label", "content_hash", "source_folder", "duplicate_group", "uniqueness",
                    "quality", "quality_flags", "taken_at", "camera", "lens", "location")
SAMPLE = 256  # points whose vectors and predictions are compared; a full comparison reads every vector twice
DEEP_SAMPLE = 64  # --deep: files re-read and re-embedded
PAYLOAD_SLICE = 4096  # --deep compares every payload, this many points at a time


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


def check(
    Session: sessionmaker[Session],
    stores: Stores,
    trained: TrainedModels | None = None,
    models_problem: str | None = None,
    seed: int = 0,
    deep: bool = False,
    cache: FeatureCache | None = None,
    backbone: Backbone | None = None,
    current_run_id: int | None = None,
) -> DoctorReport:
    """Compare the stores (ids, a sample of vectors, a sample of predictions); `deep` also re-embeds a sample
    of files and compares with the feature cache (needs `cache` and `backbone`). `current_run_id` names the
    current training run when its models could not be loaded (`models_problem`)."""
    # Stores first, SQLite second: an ingest running meanwhile catalogues before it writes vectors, so a
    # point that appears between the two reads is found in SQLite, never mistaken for an orphan.
    close_dead_runs(Session)
    q_ids = set(stores.qdrant.ids().tolist())
    f_ids = set(stores.faiss.ids().tolist())
    with Session() as s:
        indexed = set(repo.image_ids_with_status(s, "indexed"))
        pending = set(repo.image_ids_with_status(s, "pending"))
        # Batches of a run still going are that run's business; only abandoned ones are a problem.
        open_batches = sum(1 for b in jobs.pending_batches(s) if s.get(repo.Run, b.run_id).outcome != "running")
        current = s.get(repo.Run, trained.run_id) if trained is not None else None
        stale_catalogue = repo.stale_predictions(s, current) if current is not None else 0
        dangling_groups = repo.dangling_duplicate_groups(s)
    catalogued = indexed | pending
    with Session() as s:
        removed = repo.removed_ids(s, (q_ids | f_ids) - catalogued)
    # Indexed (by some backbone) but in neither of this backbone's stores nor its feature cache: nothing to
    # repair them from. Pending here, not missing: the status is per image, the stores are per backbone.
    absent = indexed - q_ids - f_ids
    not_embedded = sorted(absent - _cached(Session, cache, absent)) if cache is not None else []
    expected = indexed - set(not_embedded)
    report = DoctorReport(
        n_indexed=len(indexed), n_pending=len(pending), n_qdrant=len(q_ids), n_faiss=len(f_ids),
        open_batches=open_batches,
        missing_in_qdrant=sorted(expected - q_ids), missing_in_faiss=sorted(expected - f_ids),
        orphans_in_qdrant=sorted(q_ids - catalogued - removed), orphans_in_faiss=sorted(f_ids - catalogued - removed),
        removed_still_stored=sorted(removed), not_embedded=not_embedded, dangling_groups=dangling_groups,
        model_run_id=trained.run_id if trained is not None else current_run_id, models_problem=models_problem,
        stale_catalogue=stale_catalogue, backbone=stores.qdrant.info.tag,
    )
    rng = np.random.default_rng(seed)
    both = sorted(q_ids & f_ids)
    if both:
        sample = sorted(rng.choice(both, size=min(SAMPLE, len(both)), replace=False).tolist())
        xq, xf = stores.qdrant.get_vectors(sample), stores.faiss.get_vectors(sample)
        bad = ~np.isclose(np.einsum("ij,ij->i", xq, xf), 1.0, atol=1e-4)
        report.vector_mismatches = [sample[i] for i in np.flatnonzero(bad)]
        payloads = stores.qdrant.get_payloads(sample)
        report.stale_payloads = _stale_payloads(sample, xq, payloads, trained)
        # Payload fields in both stores: the sample, or every point with --deep (in slices: bounded memory).
        parts = ([(both[k : k + PAYLOAD_SLICE], None) for k in range(0, len(both), PAYLOAD_SLICE)] if deep
                 else [(sample, payloads)])
        for part, in_qdrant in parts:
            in_qdrant = in_qdrant if in_qdrant is not None else stores.qdrant.get_payloads(part)
            in_mirror = stores.faiss.get_payloads(part)
            rows = _catalogue_rows(Session, part)
            report.payload_mismatches += _payload_mismatches(rows, part, in_qdrant)
            report.mirror_payload_mismatches += sorted(
                set(_payload_mismatches(rows, part, in_mirror)) | set(_mirror_behind(part, in_qdrant, in_mirror)))
            report.payloads_compared += len(part)
    if cache is not None:
        cache.refresh()
        report.damaged_shards = [p for p in cache.unreadable if p.exists()]
    if deep and cache is not None and backbone is not None:
        _deep_check(Session, cache, backbone, sorted(indexed), rng, report)
    return report


def _same_prediction(stored: dict[str, Any], expected: dict[str, Any]) -> bool:
    for key in PREDICTION_FIELDS:
        a, b = stored.get(key), expected.get(key)
        if key == "predicted_prob" and a is not None and b is not None:
            if not np.isclose(a, b, atol=1e-4):
                return False
        elif a != b:
            return False
    return True


def _stale_payloads(ids: list[int], xb: np.ndarray, payloads: list[dict], trained: TrainedModels | None) -> list[int]:
    """Points whose stored prediction and clusters are not what this backbone's current models say."""
    expected = predict(trained, xb)
    return [i for i, p, e in zip(ids, payloads, expected, strict=True) if not _same_prediction(p, e)]


def _cached(Session, cache: FeatureCache, ids: set[int]) -> set[int]:
    """Which of `ids` have their features in this backbone's feature cache."""
    if not ids:
        return set()
    with Session() as s:
        rows = repo.images_by_ids(s, ids)
    cache.refresh()
    return {i for i, row in rows.items() if row.content_hash in cache}


def _catalogue_rows(Session, ids: list[int]) -> dict[int, Any] | None:
    """Catalogue rows by id, or None when they cannot be read (a damaged catalogue: its damage is the integrity
    check's to report, and --repair's to rebuild; the payload comparison waits)."""
    from sqlalchemy.exc import DatabaseError

    try:
        with Session() as s:
            return repo.images_by_ids(s, ids)
    except DatabaseError as exc:
        log.warning("payload fields not compared: catalogue rows cannot be read (%s)", exc.orig)
        return None


def _payload_mismatches(rows: dict[int, Any] | None, ids: list[int], payloads: list[dict]) -> list[int]:
    """Points whose payload disagrees with payload_for(catalogue row) on a catalogue-derived field (the
    predictions are checked against the models instead: they belong to the stores' backbone)."""
    if rows is None:
        return []
    bad = []
    for i, p in zip(ids, payloads, strict=True):
        if i not in rows:
            continue
        expected = payload_for(rows[i])
        if not all(_same_value(p.get(key), expected[key]) for key in CATALOGUE_FIELDS):
            bad.append(i)
    return bad


def _same_value(a: Any, b: Any) -> bool:
    """Equal, floats within what a store's JSON round trip may change (a geo point compares its coordinates).
    Relative closeness is kept tight: taken_at is ~1.6e9 seconds, and an hour's difference is a real one."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return bool(np.isclose(a, b, rtol=1e-12, atol=1e-6))
    return a == b


def _mirror_behind(ids: list[int], in_qdrant: list[dict], in_mirror: list[dict]) -> list[int]:
    """Mirror points whose predictions differ from Qdrant's: the mirror follows Qdrant, the store of record."""
    return [i for i, q, f in zip(ids, in_qdrant, in_mirror, strict=True) if not _same_prediction(f, q)]


def _deep_check(Session, cache: FeatureCache, backbone: Backbone, ids: list[int], rng, report: DoctorReport) -> None:
    """Re-read a sample of files: unchanged ones are re-embedded and compared with their cached vector."""
    from imgsearch.ingest.decode import ImageRejected, decode_side, load_rgb
    from imgsearch.models.files import bytes_sha256

    sample = sorted(rng.choice(ids, size=min(DEEP_SAMPLE, len(ids)), replace=False).tolist()) if ids else []
    with Session() as s:
        images = repo.images_by_ids(s, sample)
    cache.refresh()
    for i in sample:
        image = images.get(i)
        if image is None:
            continue
        report.deep_sampled += 1
        try:
            data = Path(image.path).read_bytes()
        except OSError:
            report.deep_files_missing += 1  # moved or deleted since: nothing to compare with
            continue
        if image.content_hash not in cache:
            continue
        report.deep_checked += 1
        if bytes_sha256(data) != image.content_hash:
            report.changed_files.append(i)
            continue
        try:
            fresh = backbone.embed_images([load_rgb(data, min_side=decode_side(backbone))])[0]
        except ImageRejected:
            continue
        if float(np.dot(fresh, cache.get([image.content_hash])[0])) < 0.999:
            report.cache_mismatches.append(i)


def repair(
    Session: sessionmaker[Session],
    stores: Stores,
    cache: FeatureCache,
    report: DoctorReport,
    trained: TrainedModels | None = None,
    delete_orphans: bool = False,
    backbone: Backbone | None = None,
    models_dir: Path | None = None,
    duplicate_threshold: float = DEFAULT_THRESHOLD,
) -> list[str]:
    """Make the catalogue and both stores agree, rebuilding each from whatever still holds its data.

    Orphan vectors (no catalogue row) are catalogued again from their payloads (path, label, hash, sizes):
    a lost or damaged catalogue is rebuilt from Qdrant, or from the FAISS mirror. Only with
    `delete_orphans` are they deleted instead (after a crashed `remove`, say). Vectors missing from Qdrant
    come from the feature cache, else the mirror; the mirror follows Qdrant. Predictions and clusters in
    the payloads come from this backbone's current models only.
    """
    done = []
    for shard in report.damaged_shards:
        done.append(f"moved the unreadable feature cache shard {shard} to {quarantine(shard)}")
    finished = removals.finish(Session, stores)
    if report.removed_still_stored:  # journalled removals whose mark moved on although a point stayed (or came back)
        stores.delete(report.removed_still_stored)
    if finished or report.removed_still_stored:
        done.append(f"deleted {max(finished, len(report.removed_still_stored))} removed images' points from both "
                    "stores, finishing their removal")
    replayed = recover(Session, stores, cache, trained)
    if replayed:
        done.append(f"replayed {replayed} images from open journal batches")
    for name, index, orphans in (("Qdrant", stores.qdrant, report.orphans_in_qdrant),
                                 ("FAISS", stores.faiss, report.orphans_in_faiss)):
        with Session() as s:  # catalogued since the check (a concurrent ingest)? then not an orphan
            orphans = [i for i in orphans if i not in repo.images_by_ids(s, orphans)]
            gone = repo.removed_ids(s, orphans)  # removed since the check: finish, never catalogue again
        if gone:
            index.delete(sorted(gone))
            orphans = [i for i in orphans if i not in gone]
        if not orphans:
            continue
        if delete_orphans:
            shown = ", ".join(map(str, orphans[:10])) + (" …" if len(orphans) > 10 else "")
            index.delete(orphans)
            done.append(f"deleted {len(orphans)} orphan vectors from {name} (--delete-orphans): {shown}")
        else:
            restored, duplicates, useless = _recatalogue(Session, orphans, index.get_payloads(orphans), stores)
            if restored:
                done.append(f"catalogued {restored} images again from their {name} payloads")
            if duplicates:
                done.append(f"{duplicates} orphan points held content already catalogued under another id: their "
                            "duplicate vectors were removed (the image itself is kept)")
            if useless:
                done.append(f"{useless} orphan points had no path or content hash to catalogue them by: removed")
    restored_runs = _restore_model_runs(Session, models_dir, backbone)
    if restored_runs:
        done.append(f"recorded training run(s) {', '.join(map(str, restored_runs))} again from their saved model "
                    "files (their metrics were lost with the catalogue)")
        bb = backbone.identity
        with Session() as s:
            current = repo.current_model_run(s, bb.name, bb.weights_sha256)
        trained = load_trained(models_dir, bb, current.id)  # the payloads' predictions were made by these
    # The ids missing from each store are looked at afresh: the steps above may have catalogued some.
    now = check(Session, stores, trained, cache=cache)
    if now.missing_in_qdrant:
        pushed, requeued = _repush(Session, stores, cache, now.missing_in_qdrant, trained)
        done.append(f"re-pushed {pushed} points to Qdrant")
        if requeued:
            done.append(f"{requeued} images had no vector anywhere for this backbone: the next ingest of their "
                        "folder with this backbone embeds them")
    in_qdrant = set(stores.qdrant.ids().tolist())
    mirror_fix = sorted((set(now.missing_in_faiss) | set(now.vector_mismatches)) & in_qdrant)
    if mirror_fix:
        # The mirror follows Qdrant: its vectors and payloads are copied from there.
        stores.faiss.upsert(mirror_fix, stores.qdrant.get_vectors(mirror_fix), stores.qdrant.get_payloads(mirror_fix))
        done.append(f"rebuilt {len(mirror_fix)} FAISS mirror entries from Qdrant")
    needs_compaction = getattr(stores.faiss, "needs_compaction", None)
    if needs_compaction is not None and needs_compaction():
        # Many small segments (or a store in the single-file format): one segment, approximate index rebuilt.
        done.append(f"compacted the FAISS mirror's {stores.faiss.compact()} segment files into one")
    if report.dangling_groups:
        from imgsearch.ingest.curation import regroup_after_removal

        n = regroup_after_removal(Session, stores, set(report.dangling_groups), duplicate_threshold)
        done.append(f"regrouped {n} images of {len(report.dangling_groups)} near-duplicate groups a removal had left "
                    "half-done")
    if report.cache_mismatches and backbone is not None:
        done.append(_fix_cache(Session, stores, cache, backbone, report.cache_mismatches, trained))
    if report.payload_mismatches or report.mirror_payload_mismatches:
        # The catalogue is the record for these fields (a relabel, a duplicates pass interrupted between the two);
        # both stores are rewritten, since a write cut short between them leaves the mirror behind.
        n = sync_payloads(Session, stores, sorted(stores.qdrant.ids().tolist()))
        done.append(f"rewrote the catalogue fields of {n} payloads in both stores from the catalogue (label, path, "
                    "near-duplicate group, uniqueness, quality)")
    if report.mirror_payload_mismatches:
        n = _mirror_predictions_from_qdrant(stores, sorted(set(stores.qdrant.ids().tolist())
                                                           & set(stores.faiss.ids().tolist())))
        if n:
            done.append(f"copied the predictions and clusters of {n} FAISS mirror points from Qdrant")
    after = check(Session, stores, trained, cache=cache)
    if report.models_problem:
        done.append(f"predictions left as they are: the current models cannot be loaded ({report.models_problem})")
    elif after.stale_payloads or after.stale_catalogue or report.stale_payloads or report.stale_catalogue:
        if trained is not None:
            n = refresh_payloads(Session, stores, cache, trained)
            done.append(f"rewrote the predictions and clusters of {n} images with the current models "
                        f"(training run {trained.run_id})")
        else:
            n = _clear_predictions(stores)
            done.append(f"cleared predictions from {n} points: no current models for this backbone made them")
    return done or ["nothing to repair"]


def _mirror_predictions_from_qdrant(stores: Stores, ids: list[int]) -> int:
    """Mirror points whose predictions differ from Qdrant's get Qdrant's (in slices: bounded memory)."""
    n = 0
    for start in range(0, len(ids), PAYLOAD_SLICE):
        part = ids[start : start + PAYLOAD_SLICE]
        in_qdrant = stores.qdrant.get_payloads(part)
        behind = set(_mirror_behind(part, in_qdrant, stores.faiss.get_payloads(part)))
        fix = [(i, {k: q.get(k) for k in PREDICTION_FIELDS}) for i, q in zip(part, in_qdrant, strict=True)
               if i in behind]
        if fix:
            stores.faiss.set_payload([i for i, _ in fix], [u for _, u in fix])
            n += len(fix)
    return n


def _recatalogue(Session, ids: Sequence[int], payloads: Sequence[dict], stores: Stores) -> tuple[int, int, int]:
    """Catalogue rows for orphan points from their payloads, under the same ids.

    Returns (restored, duplicates, useless): points whose content is catalogued under another id, and points
    whose payload names no file, are removed — neither could rebuild anything.
    """
    restored, duplicates, useless = 0, [], []
    with Session.begin() as s:
        for i, p in zip(ids, payloads, strict=True):
            if not p.get("content_hash") or not p.get("path"):
                useless.append(i)
                continue
            if repo.image_by_hash(s, p["content_hash"]) is not None:
                duplicates.append(i)
                continue
            if repo.image_by_path(s, p["path"]) is not None:
                log.warning("point %d: %s is catalogued with other content now: left alone", i, p["path"])
                continue
            repo.restore_image(
                s, i, content_hash=p["content_hash"], path=p["path"],
                file_name=p.get("file_name") or Path(p["path"]).name, label=p.get("label"),
                width=int(p.get("width") or 0), height=int(p.get("height") or 0),
                size_bytes=int(p.get("size_bytes") or _size(p["path"])),
                source_folder=p.get("source_folder") or str(Path(p["path"]).parent), status="indexed",
                predicted_label=p.get("predicted_label"), predicted_prob=p.get("predicted_prob"),
                kmeans_cluster=p.get("kmeans_cluster"), agglo_cluster=p.get("agglo_cluster"),
                model_run_id=p.get("model_run_id"), backbone=stores.qdrant.info.name,
                duplicate_group=p.get("duplicate_group"), uniqueness=p.get("uniqueness"), quality=p.get("quality"),
                quality_flags=p.get("quality_flags"),
                **({"created_at": t} if (t := _parse_time(p.get("time"))) is not None else {}),
                **_photo_meta(p),
            )
            restored += 1
    if duplicates or useless:
        stores.delete(duplicates + useless)
    return restored, len(duplicates), len(useless)


def _photo_meta(p: dict) -> dict[str, Any]:
    """The photo metadata columns for a row rebuilt from a payload: read from the file again when it is there (as
    the ingest read it, with the camera's make and model apart and the date's offset), else what the payload
    kept; taken_at_source then stays None, so the next ingest of its folder reads the file's own."""
    from imgsearch.ingest.decode import ImageRejected, read_file_header
    from imgsearch.ingest.photo_meta import read_meta

    path = Path(p["path"])
    try:
        header = read_file_header(path)
        meta = read_meta(header.exif, header.width, header.height, path.stat().st_mtime, header.xmp).columns()
    except (OSError, ImageRejected):
        pass
    else:
        meta.pop("width"), meta.pop("height")  # the payload's, as the rest of the row
        return meta
    location = p.get("location") or {}
    taken = p.get("taken_at")
    return {"camera": p.get("camera"), "lens": p.get("lens"), "latitude": location.get("lat"),
            "longitude": location.get("lon"),
            # the photo's own clock, as a camera without a zone writes it (offset None: see db.models.Image)
            "taken_at": None if taken is None else datetime.fromtimestamp(taken, UTC)}


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _restore_model_runs(Session, models_dir: Path | None, backbone: Backbone | None) -> list[int]:
    """Training runs whose complete model files exist for this backbone but whose run record is gone."""
    if backbone is None or models_dir is None:
        return []
    from imgsearch.models.trained import backbone_folder

    root = backbone_folder(models_dir, backbone.identity)
    run_ids = sorted(int(p.name.split("-")[1]) for p in root.glob("run-*") if p.name.split("-")[1].isdigit())
    restored = []
    with Session.begin() as s:
        for run_id in run_ids:
            if s.get(repo.Run, run_id) is None and has_models(models_dir, backbone.identity, run_id):
                bb = backbone.identity
                repo.restore_train_run(s, run_id, bb.name, bb.dim, bb.weights_sha256)
                restored.append(run_id)
    return restored


def _repush(Session, stores: Stores, cache: FeatureCache, ids: list[int], trained: TrainedModels | None):
    """Vectors for Qdrant from the feature cache, else from the FAISS mirror; else back to 'pending'."""
    with Session() as s:
        images = repo.images_by_ids(s, ids)
    ids = [i for i in ids if i in images]
    cache.refresh()
    from_cache = [i for i in ids if images[i].content_hash in cache]
    if from_cache:
        xb = cache.get([images[i].content_hash for i in from_cache])
        stores.qdrant.upsert(from_cache, xb, store_payloads(images, from_cache, predict(trained, xb)))
    in_faiss = set(stores.faiss.ids().tolist())
    from_mirror = [i for i in ids if i not in set(from_cache) and i in in_faiss]
    if from_mirror:
        xb = stores.faiss.get_vectors(from_mirror)
        stores.qdrant.upsert(from_mirror, xb, store_payloads(images, from_mirror, predict(trained, xb)))
    lost = [i for i in ids if i not in set(from_cache) and i not in in_faiss]
    # Those with no vector anywhere stay as they are: the status is shared by every backbone's stores, so marking
    # them 'pending' here would hide them from another backbone that has them. The next ingest embeds them.
    return len(from_cache) + len(from_mirror), len(lost)


def _fix_cache(Session, stores: Stores, cache: FeatureCache, backbone: Backbone, ids: list[int],
               trained: TrainedModels | None) -> str:
    """Re-embed files whose cached vector is wrong; the new shard overrides the old entry."""
    from imgsearch.ingest.decode import decode_side, load_rgb

    with Session() as s:
        images = repo.images_by_ids(s, ids)
    ids = [i for i in ids if i in images]
    side = decode_side(backbone)
    xb = np.stack([backbone.embed_images([load_rgb(Path(images[i].path).read_bytes(), min_side=side)])[0] for i in ids])
    cache.add([images[i].content_hash for i in ids], xb)
    stores.upsert(ids, xb, store_payloads(images, ids, predict(trained, xb)))
    return f"re-embedded {len(ids)} images whose cached vectors did not match their files"


CLEAR_BATCH = 1024  # points per set_payload: memory stays bounded at a million points, as in refresh_payloads


def _clear_predictions(stores: Stores) -> int:
    ids = stores.qdrant.ids().tolist()
    for start in range(0, len(ids), CLEAR_BATCH):
        part = ids[start : start + CLEAR_BATCH]
        stores.set_payload(part, [dict.fromkeys(PREDICTION_FIELDS) for _ in part])
    return len(ids)


# ---- damaged files: moved aside, then rebuilt ---------------------------------------------------------------


def quarantine(path: Path) -> Path:
    """Move a damaged file or folder aside (never delete it): `<name>.damaged-<UTC time>`."""
    target = path.with_name(f"{path.name}.damaged-{datetime.now(UTC):%Y%m%dT%H%M%S}")
    path.rename(target)
    return target


def open_for_repair(ctx) -> list[str]:
    """Make the catalogue and the stores openable, moving aside whatever is too damaged to open.

    The moved-aside catalogue or store is then rebuilt by `repair` from the copies that survive: the
    catalogue from the stores' payloads, a store from the feature cache and the other store.
    """
    from sqlalchemy.exc import DatabaseError

    from imgsearch.db.session import (
        CORRUPT_ERRORS,
        CorruptDatabaseError,
        integrity_problem,
        make_engine,
        sqlite_error_name,
    )
    from imgsearch.search.index import StoreDamagedError

    done = []
    db_file = ctx.settings.db_url.removeprefix("sqlite:///") if ctx.settings.db_url.startswith("sqlite:///") else None
    problem = None
    try:
        ctx.Session  # noqa: B018 - opens and migrates
    except CorruptDatabaseError as exc:
        problem = str(exc.orig)
    except DatabaseError as exc:  # damage deeper in the file, met while migrating
        if sqlite_error_name(exc) not in CORRUPT_ERRORS:
            raise
        problem = str(exc.orig)
    if problem is None and db_file is not None:
        engine = make_engine(ctx.settings.db_url)
        try:
            problem = integrity_problem(engine)
        finally:
            engine.dispose()
    if problem is not None and db_file is not None:
        ctx.reopen_catalogue()
        moved = quarantine(Path(db_file))
        for suffix in ("-wal", "-shm"):
            Path(db_file + suffix).unlink(missing_ok=True)  # belong to the damaged file, useless without it
        done.append(f"the catalogue was damaged ({problem}): moved it to {moved}; a new one is rebuilt below")
    for _ in range(3):  # each store at most once, and one more look
        try:
            ctx.stores.qdrant.count()
            ctx.stores.faiss.count()
            break
        except StoreDamagedError as exc:
            ctx.close()
            moved = quarantine(exc.folder)
            done.append(f"{exc}: moved {exc.folder} to {moved}; it is rebuilt below")
    return done


def catalogue_problem(ctx) -> str | None:
    """A message when the SQLite catalogue fails its integrity check, else None."""
    from imgsearch.db.session import integrity_problem

    engine = ctx.Session.kw["bind"]
    problem = integrity_problem(engine)
    if problem is None:
        return None
    return (f"the catalogue {ctx.settings.db_display} is damaged ({problem}). Run "
            "`imgsearch doctor --repair`: it moves the file aside and rebuilds the catalogue from the vector "
            "stores' payloads.")


def refit_models(ctx) -> str:
    """Fit the current training run's models again, with its own parameters, when their files are lost.

    The features are cached, so this is the experiment alone (minutes at Caltech-101 size); it is recorded
    as a new training run, which becomes current.
    """
    from imgsearch.ui.services.training import TrainingParams, run_training

    run_id = ctx.trained_run_id()
    with ctx.Session() as s:
        params = dict((s.get(repo.Run, run_id).params or {}) if run_id is not None else {})
    default = TrainingParams.from_settings(ctx.settings)
    same = TrainingParams(
        k_clusters=params["k"] if params.get("k") is not None else default.k_clusters,
        seed=params["seed"] if params.get("seed") is not None else default.seed,
        val_fraction=params["val_fraction"] if params.get("val_fraction") is not None else default.val_fraction,
    )
    try:
        outcome = run_training(ctx, data=None, force=True, progress=False, params=same)
    except ValueError as exc:  # no cached features to fit on (a restored backup has no feature cache), K too big
        return (f"the models of training run {run_id} could not be loaded, and cannot be fitted again here ({exc}); "
                "ingest the collection's folders again (their features are embedded and cached), then run "
                "`imgsearch train --force`")
    return (f"the models of training run {run_id} could not be loaded: fitted them again from the cached features "
            f"with the same parameters, as training run {outcome.run_id} (now current)")


# ---- the whole sequence, as `imgsearch doctor` runs it -------------------------------------------------------


repair_stores = repair  # under a second name for `run`, whose flag is called repair


@dataclass
class DoctorRun:
    """What `run` did, for a front end to print: `lines` in order (check's report, then `repair: ...` lines and the
    recheck's summary), whether the stores agree at the end, and `refused`: a damaged catalogue found without
    `repair` (nothing else was done)."""

    lines: list[str] = field(default_factory=list)
    consistent: bool = False
    refused: str | None = None


def run(ctx, repair: bool = False, delete_orphans: bool = False, deep: bool = False,
        say: Callable[[str], None] | None = None) -> DoctorRun:
    """Check; with `repair`: make the catalogue and stores openable first, fit lost models again, repair what the
    check found, and check again. `say` hears each line as it comes (a repair takes a while); the result has them
    all. StoreBusyError / StoreMismatchError from opening the stores go to the caller."""
    from imgsearch.models.persistence import ModelLoadError

    result = DoctorRun()

    def out(line: str) -> None:
        result.lines.append(line)
        if say is not None:
            say(line)

    if repair:
        for line in open_for_repair(ctx):
            out(f"repair: {line}")
    else:
        result.refused = catalogue_problem(ctx)
        if result.refused:
            return result
    stores = ctx.stores

    def models():
        try:
            return ctx.trained(), None
        except ModelLoadError as exc:
            return None, str(exc)

    trained, problem = models()
    report = check(ctx.Session, stores, trained, problem, deep=deep, cache=ctx.cache, backbone=ctx.backbone,
                   current_run_id=ctx.trained_run_id())
    for line in report.lines():
        out(line)
    if repair and problem:
        out(f"repair: {refit_models(ctx)}")
        trained, problem = models()
    if repair and not report.consistent:
        for line in repair_stores(ctx.Session, stores, ctx.cache, report, trained, delete_orphans=delete_orphans,
                                  backbone=ctx.backbone, models_dir=ctx.settings.models_dir,
                                  duplicate_threshold=ctx.settings.duplicate_threshold):
            out(f"repair: {line}")
        trained, problem = models()  # runs restored from their model files may have made some current
        report = check(ctx.Session, stores, trained, problem, cache=ctx.cache, current_run_id=ctx.trained_run_id())
        out(report.lines()[-1])
    result.consistent = report.consistent
    return result
