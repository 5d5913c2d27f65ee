"""Tables the CLI prints: the experiment summary and the list of recorded runs."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def print_summary(console: Console, run_id: int, backbone: str, m: dict) -> None:
    """The seed's summary: both classifiers, both clusterings, retrieval; micro and class-averaged."""
    table = Table(
        title=f"Run {run_id} — {backbone}, {int(m['n_images'])} images, {int(m['n_classes'])} classes "
        f"(train {int(m['n_train'])} / val {int(m['n_val'])})"
    )
    table.add_column("model")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for model, label in (("svm", "SVM (RBF)"), ("random_forest", "Random Forest")):
        table.add_row(label, "val accuracy", _fmt(m[f"{model}.accuracy"]))
        table.add_row("", "val mean per-class acc.", _fmt(m[f"{model}.mean_per_class_accuracy"]))
        table.add_row("", "val macro-F1", _fmt(m[f"{model}.macro_f1"]))
    for model, label in (
        ("kmeans", f"K-Means (K={int(m['k'])})"),
        ("agglomerative", f"Agglomerative Ward (K={int(m['k'])})"),
    ):
        table.add_row(label, "silhouette", _fmt(m[f"{model}.silhouette"]))
        table.add_row("", "Davies–Bouldin", _fmt(m[f"{model}.davies_bouldin"]))
        table.add_row(
            "",
            "NMI / ARI / purity",
            f"{_fmt(m[f'{model}.nmi'], 3)} / {_fmt(m[f'{model}.ari'], 3)} / {_fmt(m[f'{model}.purity'], 3)}",
        )
    for scope, label in (
        ("retrieval_loo", "FAISS retrieval, leave-one-out"),
        ("retrieval_val", "FAISS retrieval, val → train"),
    ):
        table.add_row(
            label,
            "P@1 / P@5 / P@10",
            f"{_fmt(m[f'{scope}.p@1'])} / {_fmt(m[f'{scope}.p@5'])} / {_fmt(m[f'{scope}.p@10'])}",
        )
        table.add_row("", "P@10 class-averaged", _fmt(m[f"{scope}.p@10_class_avg"]))
        table.add_row("", "hit rate@10 (≥1 relevant in top 10)", _fmt(m.get(f"{scope}.hit@10")))
        table.add_row(
            "", "mAP@10 (micro / class-avg)", f"{_fmt(m[f'{scope}.map@10'])} / {_fmt(m[f'{scope}.map@10_class_avg'])}"
        )
    console.print(table)


RUN_COLUMNS = {
    "SVM acc": "svm.accuracy",
    "RF acc": "random_forest.accuracy",
    "KM sil.": "kmeans.silhouette",
    "KM DB": "kmeans.davies_bouldin",
    "AG sil.": "agglomerative.silhouette",
    "AG DB": "agglomerative.davies_bouldin",
    "P@10 loo": "retrieval_loo.p@10",
    "mAP@10 loo": "retrieval_loo.map@10",
}


def runs_table(title: str, runs: list, metrics: dict[int, dict[str, float]]) -> Table:
    """One row per run (newest first) with its counts and headline metrics."""
    table = Table(title=title)
    for col in ("run", "kind", "started", "backbone", "outcome", "images", "skipped", "dupl.", *RUN_COLUMNS):
        table.add_column(col, no_wrap=True)
    for r in runs:
        m = metrics.get(r.id, {})
        table.add_row(str(r.id), r.kind, r.started_at.strftime("%m-%d %H:%M"), r.backbone or "—", r.outcome,
                      str(r.n_images or 0), str(r.n_skipped or 0), str(r.n_duplicates or 0),
                      *(_fmt(m.get(key)) for key in RUN_COLUMNS.values()))
    return table


def results_table(title: str, results: list) -> Table:
    """Search results: rank, similarity, name, label, prediction, path."""
    table = Table(title=title)
    for col in ("#", "similarity", "file", "label", "predicted", "conf.", "path"):
        table.add_column(col)
    for rank, r in enumerate(results, 1):
        table.add_row(str(rank), f"{r.score:.4f}", r.file_name, r.label or "—", r.predicted_label or "—",
                      _fmt(r.predicted_prob, 2), r.path)
    return table
