"""`imgsearch export`: search results, a cluster, a near-duplicate group or the suspects list as CSV/JSON on
stdout, or the files copied (or linked) into a folder with the list beside them (registered by ui/cli/main.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgsearch.ui.cli.common import DataDirOpt, console, fail, open_context, quiet, search_query
from imgsearch.ui.services.export import (
    FORMATS,
    SUSPECT_FIELDS,
    ExportError,
    export_to_folder,
    image_rows,
    result_rows,
    to_text,
)


def _refuse(message: str) -> None:
    """fail, heard even while the progress lines are silenced (the list alone goes to stdout)."""
    console.quiet = False
    fail(message)


def _search_rows(ctx, image: Path, k: int, class_aware: bool, collapse: bool) -> list[dict]:
    from imgsearch.search.class_aware import query_distribution
    from imgsearch.search.service import Ranking

    service, query = search_query(ctx, image, refuse=_refuse)
    proba = None
    trained = ctx.trained() if class_aware else None
    if trained is not None and trained.has_classifier:
        proba = query_distribution(trained.models["svm"], query.vector)
    response = service.ranked(query.vector, k, Ranking(proba, collapse), exclude_id=query.own_id)
    return result_rows(response.results)


def _catalogue_rows(ctx, cluster: int | None, algorithm: str, group: int | None, top: int | None) -> list[dict]:
    from imgsearch.db import collection as data
    from imgsearch.db import repository as repo

    with ctx.Session() as s:
        if cluster is not None:
            ids = [i for i, _, _ in data.cluster_members(s, algorithm, cluster, limit=1_000_000)]
            if not ids:
                _refuse(f"no indexed image is in {algorithm} cluster {cluster} (`imgsearch train` makes the "
                        "clusters; the app's Clusters page lists them)")
        elif group is not None:
            ids = sorted(repo.duplicate_members(s, [group]))
            if len(ids) < 2:
                _refuse(f"there is no near-duplicate group {group} (`imgsearch duplicates` lists the groups)")
        else:
            suspects = data.label_suspects(s, limit=top or 50)
            if not suspects:
                _refuse("no suspected label errors are recorded: run `imgsearch suspects` first")
            return image_rows(suspects, SUSPECT_FIELDS)
        rows = repo.images_by_ids(s, ids)
        return image_rows([rows[i] for i in ids if i in rows])


def export_cmd(
    query: Annotated[Path | None, typer.Option("--query", help="Export the search results of this image file.")] = None,
    cluster: Annotated[int | None, typer.Option("--cluster", help="Export the images of this cluster.")] = None,
    algorithm: Annotated[str, typer.Option("--algorithm", help="Cluster of: kmeans or agglomerative.")] = "kmeans",
    group: Annotated[int | None, typer.Option("--group", help="Export this near-duplicate group.")] = None,
    suspects: Annotated[bool, typer.Option("--suspects", help="Export the suspected label errors.")] = False,
    to: Annotated[Path | None, typer.Option("--to", help=(
        "Copy the files into this folder (made if missing; nothing existing is overwritten) with the list "
        "beside them as export.csv/json. Without it, the list is printed."))] = None,
    link: Annotated[bool, typer.Option("--link", help="With --to: symbolic links instead of copies.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="With --query: how many results.")] = 10,
    class_aware: Annotated[bool, typer.Option("--class-aware/--plain", help="With --query: the ranking (see "
                                                                           "`search`).")] = True,
    collapse: Annotated[bool, typer.Option("--collapse-duplicates", help="With --query: one per group.")] = False,
    top: Annotated[int | None, typer.Option("--top", min=1, help="With --suspects: how many (default 50).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Export one list (exactly one of --query, --cluster, --group, --suspects) as CSV or JSON, and optionally
    the files themselves into a folder."""
    chosen = [name for name, on in (("--query", query is not None), ("--cluster", cluster is not None),
                                    ("--group", group is not None), ("--suspects", suspects)) if on]
    if len(chosen) != 1:
        _refuse("give exactly one of --query IMAGE, --cluster N, --group G, --suspects"
              + (f" (got {', '.join(chosen)})" if chosen else ""))
    if fmt not in FORMATS:
        _refuse(f"unknown --format {fmt!r}; choose from {', '.join(FORMATS)}")
    if algorithm not in ("kmeans", "agglomerative"):
        _refuse(f"unknown --algorithm {algorithm!r}; choose kmeans or agglomerative")
    if link and to is None:
        _refuse("--link needs --to DIR")
    with quiet(to is None), open_context("export", data_dir=data_dir) as ctx:
        if query is not None:
            rows = _search_rows(ctx, query, k, class_aware, collapse)
        else:
            rows = _catalogue_rows(ctx, cluster, algorithm, group, top)
    if to is None:
        print(to_text(rows, fmt), end="")
        return
    try:
        done = export_to_folder(rows, to, link=link, fmt=fmt)
    except ExportError as exc:
        _refuse(str(exc))
    console.print(f"{'linked' if link else 'copied'} {len(done.written)} files into {done.folder}; the list is in "
                  f"{done.manifest}", highlight=False)
    if done.missing:
        console.print(f"[yellow]warning:[/] {len(done.missing)} catalogued files are no longer on disk and were left "
                      f"out (first: {done.missing[0]}); `imgsearch doctor` checks the catalogue", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
