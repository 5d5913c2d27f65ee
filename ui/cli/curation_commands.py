"""Curation commands of `imgsearch`: duplicates, suspects, relabel (registered by ui/cli/main.py)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from imgsearch.models.duplicates import DEFAULT_THRESHOLD
from imgsearch.ui.cli.common import DataDirOpt, console, fail, open_context, open_stores, quiet


def duplicate_groups_report(ctx, scan) -> list[dict]:
    """One dict per group, largest first: members (the representative first, then the most similar to it) with
    path, size, label and cosine similarity to the representative, and the group's closest pair."""
    from imgsearch.db import repository as repo

    stores = ctx.stores
    with ctx.Session() as s:
        rows = repo.images_by_ids(s, [i for m in scan.groups.values() for i in m])
    out = []
    for group, members in scan.groups.items():
        members = [i for i in members if i in rows]
        if len(members) < 2 or group not in members:
            continue
        members.sort(key=lambda i: i != group)  # the representative first
        xb = stores.faiss.get_vectors(members)
        sims = xb @ xb[0]
        order = [0, *(1 + np.argsort(-sims[1:], kind="stable"))]
        members, sims = [members[j] for j in order], sims[order]
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


def duplicates_cmd(
    threshold: Annotated[float | None, typer.Option("--threshold", min=0.0, max=1.0, help=(
        "Cosine similarity at or above which two images are near-duplicates (default: "
        f"IMGSEARCH_DUPLICATE_THRESHOLD, else {DEFAULT_THRESHOLD}, measured by "
        "benchmarks/bench_duplicates.py)."))] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the groups as JSON.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Groups shown in the table (JSON lists all).")] = 20,
    data_dir: DataDirOpt = None,
) -> None:
    """Find near-duplicate groups over the whole collection (each image's nearest neighbours in the vector
    store), record them in the catalogue and the payloads (`duplicate_group`), refresh uniqueness, and list them.
    Each group is a representative (listed first) and images within the threshold of it."""
    from imgsearch.ingest.curation import backfill_quality, find_duplicates

    with quiet(as_json), open_context("duplicates", data_dir=data_dir) as ctx:
        if threshold is None:
            threshold = ctx.settings.duplicate_threshold
        stores = open_stores(ctx)
        ctx.require_intact()
        if stores.faiss.count() == 0:
            fail("the collection is empty: run `imgsearch ingest FOLDER` first")
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


def suspects_cmd(
    top: Annotated[int, typer.Option("--top", min=1, help="How many suspects to list.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the suspects as JSON.")] = False,
    folds: Annotated[int, typer.Option("--folds", min=2, max=20, help="Cross-validation folds.")] = 5,
    data_dir: DataDirOpt = None,
) -> None:
    """Labelled images whose label disagrees with what the features say: out-of-fold SVM probabilities and the
    labels of the nearest neighbours, ranked by confident learning (cleanlab). Scores are kept in the catalogue
    for the app's Suspects page; `imgsearch relabel` fixes a label."""
    from imgsearch.ui.services.label_review import score_labels, suspects

    with quiet(as_json), open_context("suspects", data_dir=data_dir) as ctx:
        try:
            ids, issues, seconds = score_labels(ctx, n_splits=folds)
        except ValueError as exc:
            fail(str(exc))
        found = suspects(ctx, ids, issues, top)
    n_flagged = int(issues.is_issue.sum())
    if as_json:
        print(json.dumps({"n_scored": len(ids), "n_flagged": n_flagged, "seconds": round(seconds, 1),
                          "suspects": [vars(x) for x in found]}, indent=1))
        return
    console.print(f"{len(ids)} labelled images scored with {folds}-fold out-of-fold probabilities and neighbour "
                  f"agreement in {seconds:.1f} s; confident learning flags {n_flagged} as likely label errors")
    table = Table(title=f"Top {len(found)} suspects", title_justify="left")
    for column in ("id", "given", "suggested", "p(given)", "flagged", "top classes", "path"):
        table.add_column(column)
    for x in found:
        table.add_row(str(x.id), x.label, x.suggested, f"{x.label_score:.3f}", "yes" if x.flagged else "",
                      ", ".join(f"{c} {p:.2f}" for c, p in x.top[:3]), x.path)
    console.print(table)


def relabel_cmd(
    label: Annotated[str, typer.Argument(help="The new label (class name).")],
    image_ids: Annotated[list[int], typer.Argument(help="Image ids (as `suspects` and `search` print them).")],
    data_dir: DataDirOpt = None,
) -> None:
    """Give images a new label in the catalogue and both vector stores; the next `imgsearch train` uses it."""
    from imgsearch.ui.services.label_review import relabel

    with open_context("relabel", data_dir=data_dir) as ctx:
        open_stores(ctx)
        try:
            n = relabel(ctx, image_ids, label)
        except (KeyError, ValueError) as exc:
            fail(str(exc).strip("'\""))
    console.print(f"relabelled {n} images as {label!r}; run `imgsearch train` to refit on the new labels")


def register(app: typer.Typer) -> None:
    app.command("duplicates")(duplicates_cmd)
    app.command("suspects")(suspects_cmd)
    app.command("relabel")(relabel_cmd)
