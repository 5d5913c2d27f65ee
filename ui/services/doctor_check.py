"""Do the catalogue, Qdrant and the FAISS mirror agree? Ids, a sample of vectors, a sample of predictions (against the
current models), and the catalogue-derived payload fields in both stores."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import jobs
from imgsearch.db import repository as repo
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.ingest.predictions import predict
from imgsearch.ingest.recovery import close_dead_runs
from imgsearch.models.backbones import Backbone
from imgsearch.models.trained import PREDICTION_FIELDS, TrainedModels
from imgsearch.search.payload import payload_for
from imgsearch.search.stores import Stores
from imgsearch.ui.services.doctor_deep import deep_check
from imgsearch.ui.services.doctor_report import DoctorReport

log = logging.getLogger(__name__)

# Payload fields copied from the catalogue row (time is left out: it is the row's, rewritten in its own format).
# The photo metadata too: points written before it was read (migration 0007) lack it, as their rows do, until an
# ingest of their folder fills both in.
CATALOGUE_FIELDS = ("path", "file_name", "label", "content_hash", "source_folder", "duplicate_group", "uniqueness",
                    "quality", "quality_flags", "taken_at", "camera", "lens", "location")
SAMPLE = 256  # points whose vectors and predictions are compared; a full comparison reads every vector twice
PAYLOAD_SLICE = 4096  # --deep compares every payload, this many points at a time


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
        open_batches = sum(1 for b in jobs.pending_batches(s) if s.get_one(repo.Run, b.run_id).outcome != "running")
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
                set(_payload_mismatches(rows, part, in_mirror)) | set(mirror_behind(part, in_qdrant, in_mirror)))
            report.payloads_compared += len(part)
    if cache is not None:
        cache.refresh()
        report.damaged_shards = [p for p in cache.unreadable if p.exists()]
    if deep and cache is not None and backbone is not None:
        deep_check(Session, cache, backbone, sorted(indexed), rng, report)
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


def mirror_behind(ids: list[int], in_qdrant: list[dict], in_mirror: list[dict]) -> list[int]:
    """Mirror points whose predictions differ from Qdrant's: the mirror follows Qdrant, the store of record."""
    return [i for i, q, f in zip(ids, in_qdrant, in_mirror, strict=True) if not _same_prediction(f, q)]
