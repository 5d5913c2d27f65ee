"""Tables the CLI prints: the experiment summary and the list of recorded runs."""

from __future__ import annotations

import math
from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from imgsearch.models import metric_registry as registry


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def print_summary(console: Console, run_id: int, backbone: str, m: dict) -> None:
    """The seed's summary: both classifiers, both clusterings, retrieval; micro and class-averaged.

    Built from the metric registry; a metric the run lacks (recorded before it existed) shows as "—".
    """
    def show(name: str) -> str:
        return registry.formatted(m, name)

    table = Table(
        title=f"Run {run_id} — {backbone}, {show('n_images')} images, {show('n_classes')} classes "
        f"(train {show('n_train')} / val {show('n_val')})"
    )
    table.add_column("model")
    table.add_column("metric")
    table.add_column("value", justify="right")
    previous = None
    for group, text, metrics in registry.summary_lines():
        label = "" if group is previous else group.label
        if label and group.kind == "clustering":
            label += f" (K={show('k')})"
        table.add_row(label, text, " / ".join(show(x.name) for x in metrics))
        previous = group
    console.print(table)


RUN_COLUMNS = registry.run_columns()


def runs_table(title: str, runs: list, metrics: dict[int, dict[str, float]]) -> Table:
    """One row per run (newest first) with its counts and headline metrics."""
    table = Table(title=title)
    for col in ("run", "kind", "started", "backbone", "outcome", "images", "skipped", "dupl.",
                *(x.column for x in RUN_COLUMNS if x.column)):  # all have one: run_columns() keeps those
        table.add_column(col, no_wrap=True)
    for r in runs:
        m = metrics.get(r.id, {})
        table.add_row(str(r.id), r.kind, r.started_at.strftime("%m-%d %H:%M"), r.backbone or "—", r.outcome,
                      str(r.n_images or 0), str(r.n_skipped or 0), str(r.n_duplicates or 0),
                      *(x.format(m.get(x.name)) for x in RUN_COLUMNS))
    return table


def results_table(title: str, results: list, score: str = "similarity", tags: Mapping | None = None) -> Table:
    """Search results: rank, score (`score` names it), name, label, prediction, path; with `tags` (image id ->
    [(tag, probability)]) each result's top 3 automatic tags after its prediction."""
    table = Table(title=title)
    for col in ("#", score, "file", "label", "predicted", "conf.", *(["tags"] if tags is not None else []), "path"):
        table.add_column(col)
    for rank, r in enumerate(results, 1):
        shown = [", ".join(f"{t} {p:.2f}" for t, p in tags.get(r.id, [])[:3]) or "—"] if tags is not None else []
        table.add_row(str(rank), f"{r.score:.4f}", r.file_name, r.label or "—", r.predicted_label or "—",
                      _fmt(r.predicted_prob, 2), *shown, r.path)
    return table
