"""`imgsearch doctor --repair`: the catalogue and both stores made to agree, each rebuilt from whatever still holds
its data; what could be rebuilt from is never deleted (deleting orphan vectors takes `delete_orphans`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
from imgsearch.ingest import payload_sync, removals
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.ingest.predictions import predict, refresh_payloads, store_payloads
from imgsearch.ingest.recovery import recover
from imgsearch.models.backbones import Backbone
from imgsearch.models.duplicates import DEFAULT_THRESHOLD
from imgsearch.models.trained import PREDICTION_FIELDS, TrainedModels, load_trained
from imgsearch.search.index import Compactable
from imgsearch.search.stores import Stores
from imgsearch.ui.services.doctor_check import PAYLOAD_SLICE, check, mirror_behind
from imgsearch.ui.services.doctor_damage import quarantine
from imgsearch.ui.services.doctor_rebuild import recatalogue, restore_model_runs
from imgsearch.ui.services.doctor_report import DoctorReport


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
            restored, duplicates, useless = recatalogue(Session, orphans, index.get_payloads(orphans), stores)
            if restored:
                done.append(f"catalogued {restored} images again from their {name} payloads")
            if duplicates:
                done.append(f"{duplicates} orphan points held content already catalogued under another id: their "
                            "duplicate vectors were removed (the image itself is kept)")
            if useless:
                done.append(f"{useless} orphan points had no path or content hash to catalogue them by: removed")
    restored_runs = restore_model_runs(Session, models_dir, backbone)
    if restored_runs and backbone is not None and models_dir is not None:  # runs are restored only with both
        done.append(f"recorded training run(s) {', '.join(map(str, restored_runs))} again from their saved model "
                    "files (their metrics were lost with the catalogue)")
        bb = backbone.identity
        with Session() as s:
            current = repo.current_model_run(s, bb.name, bb.weights_sha256)
        if current is not None:  # always: the runs just restored are this backbone's, recorded 'ok'
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
    if isinstance(stores.faiss, Compactable) and stores.faiss.needs_compaction():
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
        n = payload_sync.sync(Session, stores, sorted(stores.qdrant.ids().tolist()))
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
        behind = set(mirror_behind(part, in_qdrant, stores.faiss.get_payloads(part)))
        fix = [(i, {k: q.get(k) for k in PREDICTION_FIELDS}) for i, q in zip(part, in_qdrant, strict=True)
               if i in behind]
        if fix:
            stores.faiss.set_payload([i for i, _ in fix], [u for _, u in fix])
            n += len(fix)
    return n


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
