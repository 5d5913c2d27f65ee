"""`imgsearch worker`: runs queued jobs (ui/services/jobs.py gives it their handlers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgsearch.ui.cli.common import DataDirOpt, fail, open_context


def worker_cmd(
    inbox: Annotated[Path | None, typer.Option("--inbox", help="Queue every new sub-folder that appears here.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Stop when the queue is empty.")] = False,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between queue checks.")] = 2.0,
    data_dir: DataDirOpt = None,
) -> None:
    """Run queued jobs (ingest, train) until SIGTERM/SIGINT (the batch in hand is finished first)."""
    from imgsearch.ingest.heartbeat import Heartbeat
    from imgsearch.ingest.worker import Worker
    from imgsearch.ui.services.inputs import FolderRejected
    from imgsearch.ui.services.jobs import inbox_confinement, job_handlers

    ctx = open_context("worker", data_dir=data_dir)
    try:
        confine_to = inbox_confinement(ctx.settings, inbox) if inbox else None
    except FolderRejected as exc:
        ctx.close()
        fail(f"--inbox: {exc}")
    worker = Worker(ctx.Session, job_handlers(ctx), inbox=inbox, poll_s=poll, on_stop=ctx.close,
                    heartbeat=Heartbeat(ctx.settings.data_dir, "worker"), lease_s=ctx.settings.lease_s,
                    max_attempts=ctx.settings.job_max_attempts, inbox_settle_s=ctx.settings.inbox_settle_s,
                    confine_to=confine_to)
    worker.install_signal_handlers()
    worker.run(once=once)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_cmd)
