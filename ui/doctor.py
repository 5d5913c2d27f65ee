"""`imgsearch doctor`: do SQLite, Qdrant and the FAISS mirror hold the same ids and vectors? Repair if not."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import jobs
from imgsearch.db import repository as repo
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.ingest.pipeline import close_dead_runs, recover
from imgsearch.search.payload import payload_for
from imgsearch.search.stores import Stores

SAMPLE = 256  # vectors compared between the two stores; a full comparison reads every vector twice


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
    backbone: str = ""

    @property
    def consistent(self) -> bool:
        return not (self.missing_in_qdrant or self.missing_in_faiss or self.orphans_in_qdrant
                    or self.orphans_in_faiss or self.vector_mismatches or self.open_batches)

    def lines(self) -> list[str]:
        out = [
            f"backbone {self.backbone}",
            f"SQLite: {self.n_indexed} indexed images, {self.n_pending} pending (not yet in the vector stores)",
            f"Qdrant: {self.n_qdrant} points; FAISS mirror: {self.n_faiss} vectors",
            f"open journal batches (interrupted writes): {self.open_batches}",
        ]
        for name, ids in (("in SQLite but missing from Qdrant", self.missing_in_qdrant),
                          ("in SQLite but missing from FAISS", self.missing_in_faiss),
                          ("in Qdrant with no SQLite row", self.orphans_in_qdrant),
                          ("in FAISS with no SQLite row", self.orphans_in_faiss),
                          ("with different vectors in Qdrant and FAISS", self.vector_mismatches)):
            if ids:
                shown = ", ".join(map(str, ids[:10])) + (" …" if len(ids) > 10 else "")
                out.append(f"PROBLEM: {len(ids)} ids {name}: {shown}")
        out.append("all three stores agree" if self.consistent else "stores disagree: run `imgsearch doctor --repair`")
        return out


def check(Session: sessionmaker[Session], stores: Stores, seed: int = 0) -> DoctorReport:
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
    catalogued = indexed | pending
    report = DoctorReport(
        n_indexed=len(indexed), n_pending=len(pending), n_qdrant=len(q_ids), n_faiss=len(f_ids),
        open_batches=open_batches,
        missing_in_qdrant=sorted(indexed - q_ids), missing_in_faiss=sorted(indexed - f_ids),
        orphans_in_qdrant=sorted(q_ids - catalogued), orphans_in_faiss=sorted(f_ids - catalogued),
        backbone=stores.qdrant.info.tag,
    )
    both = sorted(q_ids & f_ids)
    if both:
        rng = np.random.default_rng(seed)
        sample = sorted(rng.choice(both, size=min(SAMPLE, len(both)), replace=False).tolist())
        xq, xf = stores.qdrant.get_vectors(sample), stores.faiss.get_vectors(sample)
        bad = ~np.isclose(np.einsum("ij,ij->i", xq, xf), 1.0, atol=1e-4)
        report.vector_mismatches = [sample[i] for i in np.flatnonzero(bad)]
    return report


def repair(Session: sessionmaker[Session], stores: Stores, cache: FeatureCache, report: DoctorReport) -> list[str]:
    """Make the stores agree with the catalogue. SQLite is the record of which images exist."""
    done = []
    replayed = recover(Session, stores, cache)
    if replayed:
        done.append(f"replayed {replayed} images from open journal batches")
    for name, index, orphans in (("Qdrant", stores.qdrant, report.orphans_in_qdrant),
                                 ("FAISS", stores.faiss, report.orphans_in_faiss)):
        with Session() as s:  # catalogued since the check (a concurrent ingest)? then not an orphan
            orphans = [i for i in orphans if i not in repo.images_by_ids(s, orphans)]
        if orphans:
            index.delete(orphans)
            done.append(f"deleted {len(orphans)} orphan vectors from {name}")
    if report.missing_in_qdrant:
        pushed, requeued = _repush(Session, stores, cache, report.missing_in_qdrant)
        done.append(f"re-pushed {pushed} points to Qdrant")
        if requeued:
            done.append(f"{requeued} images had no vector anywhere: marked pending, the next ingest of their "
                        "folder embeds them")
    in_qdrant = set(stores.qdrant.ids().tolist())
    mirror_fix = sorted((set(report.missing_in_faiss) | set(report.vector_mismatches)) & in_qdrant)
    if mirror_fix:
        # The mirror follows Qdrant: its vectors and payloads are copied from there.
        stores.faiss.upsert(mirror_fix, stores.qdrant.get_vectors(mirror_fix), stores.qdrant.get_payloads(mirror_fix))
        done.append(f"rebuilt {len(mirror_fix)} FAISS mirror entries from Qdrant")
    return done or ["nothing to repair"]


def _repush(Session, stores: Stores, cache: FeatureCache, ids: list[int]) -> tuple[int, int]:
    """Vectors for Qdrant from the feature cache, else from the FAISS mirror; else back to 'pending'."""
    with Session() as s:
        images = repo.images_by_ids(s, ids)
    ids = [i for i in ids if i in images]
    cache.refresh()
    from_cache = [i for i in ids if images[i].content_hash in cache]
    if from_cache:
        stores.qdrant.upsert(from_cache, cache.get([images[i].content_hash for i in from_cache]),
                             [payload_for(images[i]) for i in from_cache])
    in_faiss = set(stores.faiss.ids().tolist())
    from_mirror = [i for i in ids if i not in set(from_cache) and i in in_faiss]
    if from_mirror:
        stores.qdrant.upsert(from_mirror, stores.faiss.get_vectors(from_mirror),
                             [payload_for(images[i]) for i in from_mirror])
    lost = [i for i in ids if i not in set(from_cache) and i not in in_faiss]
    if lost:
        with Session.begin() as s:
            repo.set_image_status(s, lost, "pending")
    return len(from_cache) + len(from_mirror), len(lost)
