"""`imgsearch mirror sync`: bring this host's FAISS mirror up to date with the Qdrant server (search/mirror_sync.py).
Registered by ui/cli/main.py."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from imgsearch.ui.cli.common import DataDirOpt, console, fail, open_context, open_stores

mirror_app = typer.Typer(no_args_is_help=True, help="The FAISS mirror of a Qdrant server (a per-host cache).")


@mirror_app.command("sync")
def sync_cmd(
    full: Annotated[bool, typer.Option("--full", help="Re-read every point, not just those changed since the "
                                       "last sync.")] = False,
    every: Annotated[float | None, typer.Option("--every", min=1.0, help=(
        "Keep syncing, this many seconds apart, until stopped (a sidecar beside the app)."))] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Write the points changed on the Qdrant server since the last sync into this host's FAISS mirror, and drop
    the points removed there. Search ranks with Qdrant instead while the mirror is behind."""
    from imgsearch.search.mirror_sync import sync_mirror

    with open_context("mirror", data_dir=data_dir) as ctx:
        settings = ctx.settings
        if not settings.qdrant_url:
            fail("mirror sync is for a Qdrant server (IMGSEARCH_QDRANT_URL): with the embedded Qdrant Edge store the "
                  "FAISS mirror is written in step with it, and `imgsearch doctor` checks that they agree")
        stores = open_stores(ctx)
        overlap_us = int(settings.mirror_overlap_s * 1_000_000)
        while True:
            report = sync_mirror(stores.qdrant, stores.faiss, overlap_us=overlap_us, full=full)
            console.print(report.line(), highlight=False)
            if every is None:
                return
            full = False
            time.sleep(every)


def register(app: typer.Typer) -> None:
    app.add_typer(mirror_app, name="mirror")
