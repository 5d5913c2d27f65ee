"""Runs whose process died are closed, and the journal batches they left open replayed (see ingest/pipeline.py
for the order of writes the journal protects)."""

from __future__ import annotations

import logging
import socket
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import jobs, leases
from imgsearch.db import repository as repo
from imgsearch.db.models import utcnow
from imgsearch.ingest import payload_sync
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.ingest.predictions import predict, store_payloads
from imgsearch.models.processes import is_alive, process_marker
from imgsearch.models.trained import TrainedModels
from imgsearch.search.stores import Stores

log = logging.getLogger(__name__)


def close_dead_runs(Session: sessionmaker[Session]) -> int:
    """Mark runs whose process died (kill -9, power loss, a container gone) 'interrupted' instead of 'running'
    forever: those whose lease expired, whatever host they ran on. Their open journal batches are then
    replayed by `recover`. Runs from before leases (no lease recorded) are judged by their pid, on their host.
    """
    now = utcnow()
    closed = 0
    with Session.begin() as s:
        for run in s.scalars(select(repo.Run).where(repo.Run.outcome == "running").order_by(repo.Run.id)):
            if run.lease_expires_at is not None:
                if not leases.expired(run.lease_expires_at, now):
                    continue
                message = (f"its process ({run.worker_id}) stopped renewing its lease, which expired at "
                           f"{run.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC")
            elif not _dead_before_leases(run.params or {}):
                continue
            else:
                message = "the process died before finishing this run"
            repo.finish_run(s, run, "interrupted", message=message)
            closed += 1
    return closed


def _dead_before_leases(params: dict[str, Any]) -> bool:
    # Only on the host that ran it can a pid be checked; elsewhere such a run stays until `doctor` on that host.
    if params.get("host") != socket.gethostname() or "pid" not in params:
        return False
    return params.get("proc") != process_marker()["proc"] and not is_alive(params)


def recover(
    Session: sessionmaker[Session], stores: Stores, cache: FeatureCache, trained: TrainedModels | None = None
) -> int:
    """Replay journal rows left open by crashed runs of this backbone. Returns how many images were replayed.

    Batches of runs still going (another process writing right now, its lease alive) are theirs to finish.
    """
    close_dead_runs(Session)
    backbone = stores.qdrant.info.name
    with Session() as s:
        pending = []
        for b in jobs.pending_batches(s):
            run = s.get(repo.Run, b.run_id)
            if run is not None and run.outcome != "running" and run.backbone in (None, backbone):
                pending.append((b.id, list(b.image_ids)))
    n = 0
    for batch_id, ids in pending:
        with Session() as s:
            images = repo.images_by_ids(s, ids)
        cache.refresh()
        # Images deleted since (by `remove`) must not come back; those without cached features are re-embedded.
        replay = [i for i in ids if i in images and images[i].content_hash in cache]
        if replay:
            xb = cache.get([images[i].content_hash for i in replay])
            payloads = store_payloads(images, replay, predict(trained, xb))
            stores.upsert(replay, xb, payloads)
            payload_sync.settle(Session, stores, dict(zip(replay, payloads, strict=True)))
        with Session.begin() as s:
            jobs.close_batch(s, batch_id)  # marks the batch's images 'indexed' ...
            # ... except those never indexed whose vectors could not be replayed: the next ingest of their folder
            # embeds them. One indexed before (by another backbone) stays so: the status is shared by every
            # backbone's stores, and those stores have it.
            repo.set_image_status(s, [i for i in ids if i in images and i not in replay
                                      and images[i].status == "pending"], "pending")
        n += len(replay)
        log.info("recovered journal batch %d: %d images replayed into the stores", batch_id, len(replay))
    return n

