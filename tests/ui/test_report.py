"""The CLI's tables: unchanged for a complete run, and a dash, not a KeyError, for a metric an older run lacks."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from rich.console import Console

from imgsearch.ui.services.report import print_summary, runs_table


def complete_metrics() -> dict[str, float]:
    """The README's Caltech-101 run, every metric the summary and the runs table show."""
    m: dict[str, float] = {
        "n_images": 8677, "n_classes": 101, "n_train": 6941, "n_val": 1736, "k": 50, "n_classes_left_out": 0,
        "svm.accuracy": 0.9418, "svm.mean_per_class_accuracy": 0.9134, "svm.macro_f1": 0.9185,
        "random_forest.accuracy": 0.9090, "random_forest.mean_per_class_accuracy": 0.8642,
        "random_forest.macro_f1": 0.8764,
        "kmeans.n_clusters": 50, "kmeans.silhouette": 0.1117, "kmeans.davies_bouldin": 2.9119,
        "kmeans.nmi": 0.804, "kmeans.ari": 0.489, "kmeans.purity": 0.611,
        "agglomerative.n_clusters": 50, "agglomerative.silhouette": 0.1182, "agglomerative.davies_bouldin": 2.8544,
        "agglomerative.nmi": 0.819, "agglomerative.ari": 0.523, "agglomerative.purity": 0.620,
    }
    for scope, v in (("retrieval_loo", (0.8901, 0.8841, 0.8676, 0.8363, 0.9887, 0.8303, 0.7988)),
                     ("retrieval_val", (0.8923, 0.8800, 0.8605, 0.8260, 0.9856, 0.8233, 0.7884))):
        keys = ("p@1", "p@5", "p@10", "p@10_class_avg", "hit@10", "map@10", "map@10_class_avg")
        m.update({f"{scope}.{key}": value for key, value in zip(keys, v, strict=True)})
    return m


# print_summary's output before the metric registry, as the README quotes it (trailing spaces stripped).
SUMMARY = """\
           Run 2 — efficientnet_lite2, 8677 images, 101 classes (train 6941 / val 1736)
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ model                          ┃ metric                              ┃                    value ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│ SVM (RBF)                      │ val accuracy                        │                   0.9418 │
│                                │ val mean per-class acc.             │                   0.9134 │
│                                │ val macro-F1                        │                   0.9185 │
│ Random Forest                  │ val accuracy                        │                   0.9090 │
│                                │ val mean per-class acc.             │                   0.8642 │
│                                │ val macro-F1                        │                   0.8764 │
│ K-Means (K=50)                 │ silhouette                          │                   0.1117 │
│                                │ Davies–Bouldin                      │                   2.9119 │
│                                │ NMI / ARI / purity                  │    0.804 / 0.489 / 0.611 │
│ Agglomerative Ward (K=50)      │ silhouette                          │                   0.1182 │
│                                │ Davies–Bouldin                      │                   2.8544 │
│                                │ NMI / ARI / purity                  │    0.819 / 0.523 / 0.620 │
│ FAISS retrieval, leave-one-out │ P@1 / P@5 / P@10                    │ 0.8901 / 0.8841 / 0.8676 │
│                                │ P@10 class-averaged                 │                   0.8363 │
│                                │ hit rate@10 (≥1 relevant in top 10) │                   0.9887 │
│                                │ mAP@10 (micro / class-avg)          │          0.8303 / 0.7988 │
│ FAISS retrieval, val → train   │ P@1 / P@5 / P@10                    │ 0.8923 / 0.8800 / 0.8605 │
│                                │ P@10 class-averaged                 │                   0.8260 │
│                                │ hit rate@10 (≥1 relevant in top 10) │                   0.9856 │
│                                │ mAP@10 (micro / class-avg)          │          0.8233 / 0.7884 │
└────────────────────────────────┴─────────────────────────────────────┴──────────────────────────┘
"""

# runs_table's output before the metric registry: a training run and an ingest run with no metrics.
RUNS = """\
                                                                                  Runs
┏━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┳━━━━━━━┳━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━┓
┃ run ┃ kind   ┃ started     ┃ backbone           ┃ outcome ┃ images ┃ skipped ┃ dupl. ┃ SVM acc ┃ RF acc ┃ KM sil. ┃ KM DB  ┃ AG sil. ┃ AG DB  ┃ P@10 loo ┃ mAP@10 loo ┃
┡━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━╇━━━━━━━╇━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━┩
│ 2   │ train  │ 05-01 12:30 │ efficientnet_lite2 │ ok      │ 8677   │ 0       │ 0     │ 0.9418  │ 0.9090 │ 0.1117  │ 2.9119 │ 0.1182  │ 2.8544 │ 0.8676   │ 0.8303     │
│ 1   │ ingest │ 05-01 12:00 │ —                  │ ok      │ 8677   │ 3       │ 1     │ —       │ —      │ —       │ —      │ —       │ —      │ —        │ —          │
└─────┴────────┴─────────────┴────────────────────┴─────────┴────────┴─────────┴───────┴─────────┴────────┴─────────┴────────┴─────────┴────────┴──────────┴────────────┘
"""  # noqa: E501


def _text(render) -> str:
    console = Console(record=True, width=200)
    render(console)
    return "".join(line.rstrip() + "\n" for line in console.export_text().splitlines())


def _summary(m: dict) -> str:
    return _text(lambda c: print_summary(c, 2, "efficientnet_lite2", m))


def _row(text: str, label: str, nth: int = 0) -> list[str]:
    """The cells of the nth table line whose metric column is `label`."""
    rows = [[cell.strip() for cell in line.strip("│").split("│")] for line in text.splitlines() if "│" in line]
    return [r for r in rows if r[1] == label][nth]


def test_summary_of_a_complete_run_is_unchanged():
    assert _summary(complete_metrics()) == SUMMARY


def test_runs_table_is_unchanged():
    runs = [SimpleNamespace(id=2, kind="train", started_at=dt.datetime(2024, 5, 1, 12, 30),
                            backbone="efficientnet_lite2", outcome="ok", n_images=8677, n_skipped=0, n_duplicates=0),
            SimpleNamespace(id=1, kind="ingest", started_at=dt.datetime(2024, 5, 1, 12, 0), backbone=None,
                            outcome="ok", n_images=8677, n_skipped=3, n_duplicates=1)]
    assert _text(lambda c: c.print(runs_table("Runs", runs, {2: complete_metrics(), 1: {}}))) == RUNS


@pytest.mark.parametrize(
    ("missing", "label", "nth", "shown"),
    [
        ("retrieval_loo.hit@10", "hit rate@10 (≥1 relevant in top 10)", 0, "—"),
        ("svm.macro_f1", "val macro-F1", 0, "—"),
        ("random_forest.accuracy", "val accuracy", 1, "—"),
        ("agglomerative.ari", "NMI / ARI / purity", 1, "0.819 / — / 0.620"),
        ("retrieval_val.map@10_class_avg", "mAP@10 (micro / class-avg)", 1, "0.8233 / —"),
        ("retrieval_val.p@5", "P@1 / P@5 / P@10", 1, "0.8923 / — / 0.8605"),
    ],
)
def test_a_metric_an_older_run_lacks_shows_a_dash(missing, label, nth, shown):
    m = complete_metrics()
    del m[missing]
    text = _summary(m)
    assert _row(text, label, nth)[2] == shown
    # Everything else is printed as for a complete run.
    assert sum(a != b for a, b in zip(text.splitlines(), SUMMARY.splitlines(), strict=True)) == 1


@pytest.mark.parametrize("missing", ["n_images", "n_train", "k"])
def test_a_count_an_older_run_lacks_shows_a_dash_in_the_title(missing):
    m = complete_metrics()
    del m[missing]
    text = _summary(m)
    assert "—" in text.splitlines()[0] + _row(text, "silhouette")[0]


def test_a_run_with_no_metrics_at_all_still_prints():
    text = _summary({})
    assert text.splitlines()[0].strip() == "Run 2 — efficientnet_lite2, — images, — classes (train — / val —)"
    assert _row(text, "val accuracy")[2] == "—" and _row(text, "silhouette")[0] == "K-Means (K=—)"
