"""`imgsearch removed`: the undo list of removals (ingest/undo.py): list it, restore from it, empty it for good."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from imgsearch.ui.cli.common import DataDirOpt, console, fail, open_context, open_stores


def removed_cmd(
    restore: Annotated[list[int] | None, typer.Option(
        "--restore", help="Put this image back (its id in the list; repeatable): catalogue row, vectors, and the "
        "file if the removal moved it.")] = None,
    empty: Annotated[bool, typer.Option("--empty", help="Forget the listed images for good, and delete the files "
                                        "their removal moved.")] = False,
    older_than: Annotated[float | None, typer.Option(
        "--older-than", min=0.0, help="With --empty: only what was removed more than this many days ago.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --empty: do not ask for confirmation.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """The images removed by `remove` and the app, restorable until the list is emptied."""
    from imgsearch.db import undo_list

    if restore and empty:
        fail("--restore and --empty do not go together")
    if older_than is not None and not empty:
        fail("--older-than goes with --empty")
    with open_context("removed", data_dir=data_dir) as ctx:
        if restore:
            from imgsearch.ingest.undo import restore as restore_images

            result = restore_images(ctx.Session, open_stores(ctx), restore, ctx.settings.duplicate_threshold)
            for line in result.lines():
                console.print(line, highlight=False)
            if result.refused:
                raise typer.Exit(1)
            return
        if empty:
            _empty(ctx, older_than, yes)
            return
        with ctx.Session() as s:
            entries = [{"id": e.image_id, "path": e.path, "removed_at": e.removed_at.isoformat(timespec="seconds"),
                        "file_moved": bool(e.files)} for e in undo_list.listed(s)]
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    if not entries:
        console.print("the undo list is empty")
        return
    table = Table(title=f"{len(entries)} removed images (restore: imgsearch removed --restore ID)")
    for column in ("id", "path", "removed at (UTC)", "file moved"):
        table.add_column(column)
    for e in entries:
        table.add_row(str(e["id"]), str(e["path"]), str(e["removed_at"]), "yes" if e["file_moved"] else "no")
    console.print(table)


def _empty(ctx, older_than: float | None, yes: bool) -> None:
    from imgsearch.db import undo_list
    from imgsearch.ingest.undo import empty

    age = timedelta(days=older_than) if older_than is not None else None
    with ctx.Session() as s:
        n = len(undo_list.listed(s))
    what = "every image on the undo list" if age is None else f"the images removed more than {older_than:g} days ago"
    if not n:
        console.print("the undo list is empty")
        return
    if not yes and not typer.confirm(f"Forget {what} for good (they cannot be restored after this)?"):
        console.print("nothing emptied")
        raise typer.Exit(1)
    result = empty(ctx.Session, ctx.settings.removed_dir, age)
    console.print(f"emptied {result.forgotten} images from the undo list for good; {result.files_deleted} moved "
                  "files deleted", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("removed")(removed_cmd)
