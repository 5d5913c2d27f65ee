"""Every metric a training run records: its stored name, label, better direction, group and display format.

The CLI's tables and the app's charts are built from this list, and a test holds `run_experiment` to it, so adding
a metric is one entry here (or one more k in RETRIEVAL_KS) plus the code that computes it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Better = Literal["higher", "lower"] | None


@dataclass(frozen=True)
class Group:
    """A model, or a family of figures; `key` prefixes its metrics' names ("svm" -> "svm.accuracy")."""

    key: str  # "" for the run's counts, whose names have no prefix
    label: str  # the summary table's model column: "SVM (RBF)"
    name: str  # chart legends and pickers: "SVM"
    short: str  # runs-table headers: "SVM acc", "P@10 loo"
    kind: Literal["classifier", "clustering", "retrieval", "counts", "timings"]


SVM = Group("svm", "SVM (RBF)", "SVM", "SVM", "classifier")
RANDOM_FOREST = Group("random_forest", "Random Forest", "Random forest", "RF", "classifier")
KMEANS = Group("kmeans", "K-Means", "K-Means", "KM", "clustering")
AGGLOMERATIVE = Group("agglomerative", "Agglomerative Ward", "Agglomerative", "AG", "clustering")
RETRIEVAL_LOO = Group("retrieval_loo", "FAISS retrieval, leave-one-out", "retrieval leave-one-out", "loo", "retrieval")
RETRIEVAL_VAL = Group("retrieval_val", "FAISS retrieval, val → train", "retrieval val → train", "val", "retrieval")
COUNTS = Group("", "Counts", "counts", "", "counts")
TIMINGS = Group("time", "Timings", "time", "time", "timings")

CLASSIFIERS = (SVM, RANDOM_FOREST)
CLUSTERINGS = (KMEANS, AGGLOMERATIVE)
RETRIEVALS = (RETRIEVAL_LOO, RETRIEVAL_VAL)

RETRIEVAL_KS = (1, 5, 10)  # run_experiment measures retrieval at these k; every k yields five metrics per scope
HEADLINE_K = 10  # the k the summary's single lines, the runs table and the charts show


def retrieval_ks(n_database: int) -> tuple[int, ...]:
    """The ks to measure against a database of n_database images.

    Every k up to HEADLINE_K (too small a database fails loudly, as it always has); larger ones only where the
    database holds k images, so their metrics are optional.
    """
    return tuple(k for k in RETRIEVAL_KS if k <= max(n_database, HEADLINE_K))


@dataclass(frozen=True)
class Metric:
    """One stored metric and how to show it."""

    name: str  # the key stored in the database, "svm.accuracy"
    label: str  # "val accuracy", "Davies–Bouldin"
    group: Group
    better: Better = None
    fmt: str = ".4f"  # format spec of the value; "d" shows it as an integer
    summary: bool | str = False  # True: its own summary line; a str: a line shared with others, joined " / "
    column: str | None = None  # its header in the runs table; None: not a column
    chart: str | None = None  # the chart across training runs it is drawn on
    optional: bool = False  # run_experiment need not produce it (the CLI records it after, or only some runs have it)

    def format(self, value: float | None) -> str:
        """The value as the tables show it; "—" when it is missing (a run from before the metric existed) or NaN."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return format(int(value), "d") if self.fmt == "d" else format(value, self.fmt)

    @property
    def title(self) -> str:
        """The label with its direction: "Davies–Bouldin (lower is better)"."""
        return self.label if self.better is None else f"{self.label} ({self.better} is better)"

    @property
    def legend(self) -> str:
        """The label with its model, for chart legends: "K-Means: silhouette"."""
        return self.label if self.group is COUNTS else f"{self.group.name}: {self.label}"


def _counts() -> list[Metric]:
    def count(name: str, label: str) -> Metric:
        return Metric(name, label, COUNTS, fmt="d")

    return [count("n_images", "images"), count("n_classes", "classes"), count("n_train", "training images"),
            count("n_val", "validation images"), count("k", "clusters asked for (K)"),
            count("n_classes_left_out", "classes too small for the classifiers"),
            Metric("n_labelled", "labelled images", COUNTS, fmt="d", optional=True)]


def _classifier(g: Group) -> list[Metric]:
    return [
        Metric(f"{g.key}.accuracy", "val accuracy", g, "higher", summary=True, column=f"{g.short} acc",
               chart="Validation accuracy"),
        Metric(f"{g.key}.mean_per_class_accuracy", "val mean per-class acc.", g, "higher", summary=True),
        Metric(f"{g.key}.macro_f1", "val macro-F1", g, "higher", summary=True),
        # The classifiers fit on a capped stratified sample (models/classifiers.capped_sample): its size.
        Metric(f"{g.key}.n_fit", "training images fitted (capped sample)", g, fmt="d"),
    ]


def _clustering(g: Group) -> list[Metric]:
    agreement = "NMI / ARI / purity"
    return [
        Metric(f"{g.key}.n_clusters", "clusters found", g, fmt="d"),
        Metric(f"{g.key}.silhouette", "silhouette", g, "higher", summary=True, column=f"{g.short} sil.",
               chart="Silhouette"),
        Metric(f"{g.key}.silhouette_n", "silhouette sample (images measured against all)", g, fmt="d"),
        Metric(f"{g.key}.davies_bouldin", "Davies–Bouldin", g, "lower", summary=True, column=f"{g.short} DB",
               chart="Davies–Bouldin"),
        Metric(f"{g.key}.nmi", "NMI", g, "higher", ".3f", summary=agreement),
        Metric(f"{g.key}.ari", "ARI", g, "higher", ".3f", summary=agreement),
        Metric(f"{g.key}.purity", "purity", g, "higher", ".3f", summary=agreement),
        # Agglomerative only: how many k-means micro-clusters Ward merged (0: exact Ward on every image).
        *([Metric(f"{g.key}.n_summary", "Ward on micro-clusters (0 = exact)", g, fmt="d")]
          if g is AGGLOMERATIVE else []),
    ]


def _retrieval(g: Group) -> list[Metric]:
    ks, top = RETRIEVAL_KS, HEADLINE_K
    precision = " / ".join(f"P@{k}" for k in ks)
    average_precision = f"mAP@{top} (micro / class-avg)"
    only_leave_one_out = g is RETRIEVAL_LOO  # the runs table has room for one scope
    out = [Metric(f"{g.key}.n_queries", "queries", g, fmt="d")]
    # Kind-major, so the summary's lines come out in this order. Past the headline k, see retrieval_ks.
    out += [Metric(f"{g.key}.p@{k}", f"P@{k}", g, "higher", summary=precision,
                   column=f"P@{k} {g.short}" if k == top and only_leave_one_out else None,
                   chart="Retrieval" if k == top else None, optional=k > top) for k in ks]
    out += [Metric(f"{g.key}.p@{k}_class_avg", f"P@{k} class-averaged", g, "higher", summary=k == top,
                   optional=k > top) for k in ks]
    out += [Metric(f"{g.key}.hit@{k}", f"hit rate@{k} (≥1 relevant in top {k})", g, "higher", summary=k == top,
                   optional=k > top) for k in ks]
    out += [Metric(f"{g.key}.map@{k}", f"mAP@{k}", g, "higher", summary=average_precision if k == top else False,
                   column=f"mAP@{k} {g.short}" if k == top and only_leave_one_out else None,
                   chart="Retrieval" if k == top else None, optional=k > top) for k in ks]
    out += [Metric(f"{g.key}.map@{k}_class_avg", f"mAP@{k} class-averaged", g, "higher",
                   summary=average_precision if k == top else False, optional=k > top) for k in ks]
    return out


def _timings() -> list[Metric]:
    def seconds(key: str, label: str, optional: bool = False) -> Metric:
        return Metric(f"{TIMINGS.key}.{key}", label, TIMINGS, "lower", ".1f", optional=optional)

    # run_experiment returns its timings without the prefix (ExperimentResult.timings); training adds it.
    return [*(seconds(f"fit_{g.key}_s", f"fit {g.name} (s)") for g in (*CLASSIFIERS, *CLUSTERINGS)),
            seconds("retrieval_eval_s", "retrieval evaluation (s)"),
            seconds("cluster_eval_s", "clustering metrics (s)"),
            seconds("train_s", "fitting and evaluation (s)", optional=True),
            seconds("total_s", "whole run (s)", optional=True)]


def _index(metrics: Iterable[Metric]) -> dict[str, Metric]:
    out: dict[str, Metric] = {}
    for m in metrics:
        if m.name in out:
            raise ValueError(f"metric {m.name!r} is registered twice")
        out[m.name] = m
    return out


METRICS: dict[str, Metric] = _index([
    *_counts(),
    *(m for g in CLASSIFIERS for m in _classifier(g)),
    *(m for g in CLUSTERINGS for m in _clustering(g)),
    *(m for g in RETRIEVALS for m in _retrieval(g)),
    *_timings(),
])


def unregistered(names: Iterable[str]) -> list[str]:
    """The names that are not registered, sorted."""
    return sorted(set(names) - METRICS.keys())


def of_group(group: Group) -> list[Metric]:
    return [m for m in METRICS.values() if m.group is group]


def summary_lines() -> list[tuple[Group, str, list[Metric]]]:
    """The summary table's lines in registry order: (group, metric column text, the metrics shown on it)."""
    lines: dict[tuple[str, str], tuple[Group, str, list[Metric]]] = {}
    for m in METRICS.values():
        if m.summary:
            text = m.label if m.summary is True else m.summary
            lines.setdefault((m.group.key, text), (m.group, text, []))[2].append(m)
    return list(lines.values())


def run_columns() -> list[Metric]:
    """The runs table's metric columns, in registry order."""
    return [m for m in METRICS.values() if m.column]


def charts() -> dict[str, list[Metric]]:
    """Chart title -> the metrics drawn on it. The title says which way is better when its metrics agree."""
    by_chart: dict[str, list[Metric]] = {}
    for m in METRICS.values():
        if m.chart:
            by_chart.setdefault(m.chart, []).append(m)
    out = {}
    for chart, metrics in by_chart.items():
        better = {m.better for m in metrics}
        out[chart if len(better) != 1 or None in better else f"{chart} ({better.pop()} is better)"] = metrics
    return out


def formatted(m: Mapping[str, float], name: str) -> str:
    """The stored value of metric `name` in one run's metrics, formatted; "—" when the run lacks it."""
    return METRICS[name].format(m.get(name))
