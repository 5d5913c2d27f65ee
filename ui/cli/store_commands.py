"""`imgsearch doctor` (ui/services/doctor.py) and `imgsearch remove`: the stores checked, repaired, pruned."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgsearch.ui.cli.common import DataDirOpt, console, fail, open_context, open_stores


def doctor_cmd(
    repair: Annotated[bool, typer.Option(
        "--repair", help="Make the stores agree, rebuilding from what holds the data (the catalogue from payloads, "
        "Qdrant from the feature cache, ...).")] = False,
    delete_orphans: Annotated[bool, typer.Option(
        "--delete-orphans", help="With --repair: delete vectors that have no catalogue row instead of cataloguing "
        "them again from their payloads.")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="Also re-read and re-embed a sample of files and compare "
                                       "with the feature cache.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Check that SQLite, Qdrant and the FAISS mirror hold the same ids, vectors and current predictions."""
    from imgsearch.search.index import StoreBusyError, StoreMismatchError
    from imgsearch.ui.cli.backup_commands import finish_interrupted_restore
    from imgsearch.ui.services import doctor

    finish_interrupted_restore(data_dir)  # a killed restore: its data dir is checked once whole again
    with open_context("doctor", data_dir=data_dir) as ctx:
        try:
            result = doctor.run(ctx, repair=repair, delete_orphans=delete_orphans, deep=deep,
                                say=lambda line: console.print(line, highlight=False))
        except (StoreBusyError, StoreMismatchError) as exc:
            fail(str(exc))
    if result.refused:
        fail(result.refused)
    if not result.consistent:
        raise typer.Exit(1)


def remove_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders to remove from every store.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Remove images (by file or folder) from SQLite, Qdrant and the FAISS mirror, onto the undo list."""
    from imgsearch.ingest.removals import remove_paths

    with open_context("remove", data_dir=data_dir) as ctx:
        result = remove_paths(ctx.Session, open_stores(ctx), paths, ctx.settings.duplicate_threshold)
    if not result["removed"] and not result["paths_detached"]:
        shown = ", ".join(str(p) for p in paths)
        console.print(f"removed nothing: no catalogued image is at or under {shown} (paths are matched exactly, "
                      "case included)", highlight=False)
        return
    console.print(f"moved {result['removed']} images to the undo list; {result['paths_detached']} duplicate paths "
                  "dropped or promoted (content still present elsewhere stays). `imgsearch removed` lists them, "
                  "`imgsearch removed --restore ID` puts one back, `imgsearch removed --empty` forgets them for good.",
                  highlight=False)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_cmd)
    app.command("remove")(remove_cmd)
