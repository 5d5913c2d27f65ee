"""Curation commands of `imgsearch`: duplicates, suspects, relabel (registered on the CLI app by ui/cli.py)."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.table import Table

from imgsearch.models.duplicates import DEFAULT_THRESHOLD
from imgsearch.ui.cli import DataDirOpt, _context, _fail, _stores, app, console


@contextmanager
def _quiet(on: bool):
    """With --json, stdout carries the JSON alone: the usual progress lines (the backbone...) are not printed."""
    before = console.quiet
    console.quiet = on or before
    try:
        yield
    finally:
        console.quiet = before


def duplicate_groups_report(ctx, scan) -> list[dict]:
    """One dict per group, largest first: members with path, size, label and cosine similarity to the first
    (smallest id) member, and the group's closest pair."""
    from imgsearch.db import repository as repo

    stores = ctx.stores
    with ctx.Session() as s:
        rows = repo.images_by_ids(s, [i for m in scan.groups.values() for i in m])
    out = []
    for group, members in scan.groups.items():
        members = [i for i in members if i in rows]
        if len(members) < 2:
            continue
        xb = stores.faiss.get_vectors(members)
        sims = xb @ xb[0]
        out.append({
            "group": group,
            "size": len(members),
            "max_similarity": round(max(scan.pairs.get((a, b), 0.0) for a in members for b in members if a < b), 4),
            "members": [{"id": i, "path": rows[i].path, "width": rows[i].width, "height": rows[i].height,
                         "size_bytes": rows[i].size_bytes, "label": rows[i].label,
                         "similarity": round(float(sim), 4)} for i, sim in zip(members, sims, strict=True)],
        })
    out.sort(key=lambda g: (-g["size"], -g["max_similarity"], g["group"]))
    return out


@app.command("duplicates")
def duplicates_cmd(
    threshold: Annotated[float, typer.Option("--threshold", min=0.0, max=1.0, help=(
        "Cosine similarity at or above which two images are near-duplicates (default measured by "
        "benchmarks/bench_duplicates.py)."))] = DEFAULT_THRESHOLD,
    as_json: Annotated[bool, typer.Option("--json", help="Print the groups as JSON.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Groups shown in the table (JSON lists all).")] = 20,
    data_dir: DataDirOpt = None,
) -> None:
    """Find near-duplicate groups over the whole collection (each image's nearest neighbours in the vector
    store), record them in the catalogue and the payloads (`duplicate_group`), refresh uniqueness, and list them."""
    from imgsearch.ingest.curation import backfill_quality, find_duplicates

    with _quiet(as_json), _context("duplicates", data_dir=data_dir) as ctx:
        stores = _stores(ctx)
        ctx.require_intact()
        if stores.faiss.count() == 0:
            _fail("the collection is empty: run `imgsearch ingest FOLDER` first")
        scan = find_duplicates(ctx.Session, stores, threshold=threshold)
        t = time.perf_counter()
        n_quality = backfill_quality(ctx.Session, stores)  # only images ingested before quality flags existed
        quality_s = time.perf_counter() - t
        groups = duplicate_groups_report(ctx, scan)
    n_in = sum(g["size"] for g in groups)
    summary = {"threshold": threshold, "n_images": scan.n_images, "n_groups": len(groups), "n_in_groups": n_in,
               "n_updated": scan.n_updated, "seconds": round(scan.timings["total_s"], 2)}
    if as_json:
        print(json.dumps({**summary, "groups": groups}, indent=1))
        return
    console.print(f"{len(groups)} near-duplicate groups ({n_in} images) among {scan.n_images} at cosine ≥ "
                  f"{threshold}; {scan.n_updated} catalogue rows and payloads updated (groups, uniqueness) in "
                  f"{scan.timings['total_s']:.1f} s (neighbour search {scan.timings['search_s']:.1f} s)")
    if n_quality:
        console.print(f"quality flags computed for {n_quality} images that had none, in {quality_s:.1f} s")
    for g in groups[:limit]:
        table = Table(title=f"group {g['group']}: {g['size']} images, closest pair {g['max_similarity']:.3f}",
                      title_justify="left")
        for column in ("id", "similarity", "size", "bytes", "label", "path"):
            table.add_column(column)
        for m in g["members"]:
            table.add_row(str(m["id"]), f"{m['similarity']:.3f}", f"{m['width']}×{m['height']}",
                          f"{m['size_bytes']:,}", m["label"] or "–", m["path"])
        console.print(table)
    if len(groups) > limit:
        console.print(f"… {len(groups) - limit} more groups (--limit, or --json for all)")
