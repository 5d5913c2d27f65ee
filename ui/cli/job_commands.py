"""`imgsearch jobs`: the queue with each job's state, worker, progress, attempts and errors
(registered by ui/cli/main.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from imgsearch.ui.cli.common import DataDirOpt, console, fail, load_settings


def jobs_cmd(
    status: Annotated[str | None, typer.Option("--status", help="Only jobs in this status "
                                               "(queued, running, done, failed, cancelled).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="The newest this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list on stdout.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """List jobs, newest first: state, the worker holding it, progress (a training job's stage), attempts and errors."""
    from imgsearch.db import jobs
    from imgsearch.db.models import JOB_STATUSES
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.job_status import JobView, job_row

    if status is not None and status not in JOB_STATUSES:
        fail(f"--status must be one of {', '.join(JOB_STATUSES)}; got {status!r}")
    Session = open_database(load_settings(data_dir=data_dir))
    with Session() as s:
        rows = [job_row(JobView.of(j)) for j in jobs.list_jobs(s, status=status, limit=limit)]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    if not rows:
        console.print("no jobs" + (f" {status}" if status else ""))
        return
    table = Table("id", "kind", "folder", "state", "worker", "progress", "attempts", "error")
    for r in rows:
        progress = f"{r['done']:,}/{r['total']:,}" + (f" ({r['skipped']:,} skipped)" if r["skipped"] else "")
        progress += f"\n{r['stage']}" if r["stage"] else ""  # a training job's stage, while it runs
        table.add_row(str(r["id"]), r["kind"], r["folder"], r["state"], r["worker"] or "", progress,
                      str(r["attempts"]), r["error"] or "")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("jobs")(jobs_cmd)
