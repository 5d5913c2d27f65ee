"""Pure functions that turn search results, runs and metrics into dataframes and plotly figures."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from imgsearch.models import metric_registry as registry
from imgsearch.search.index import Filter
from imgsearch.ui.services import photo_info
from imgsearch.ui.services.cluster_names import cluster_title

# Charts across training runs, from the metric registry: title ("Davies–Bouldin (lower is better)") -> metric names.
HISTORY_CHARTS = {title: [m.name for m in metrics] for title, metrics in registry.charts().items()}


def fmt_prob(p: float | None) -> str:
    return "–" if p is None else f"{p:.0%}"


_PREFIX = re.compile(r"^\d+[_\-. ]+(?=\D)")


def display_label(label: str | None) -> str:
    """A folder name as people read it: "054_sunflower" -> "sunflower", "Faces_easy" -> "Faces easy"."""
    if label is None:
        return "–"
    shown = _PREFIX.sub("", label).replace("_", " ").strip()
    return shown or label


def cluster_name(row: Mapping) -> str:
    """A `db.collection.cluster_summary` row as people read it: "7 · Leopards 94%", "7 · mixed: gramophone 14%,
    metronome 11%, …", "7 · tagged tabby, tiger cat" (cluster_names.cluster_title), else "7 · unlabelled"."""
    return f"{row['cluster']} · {cluster_title(row, display_label) or 'unlabelled'}"


def tags_text(tags: Sequence[Any], n: int = 3) -> str:
    """ "Irish setter 91% · tabby 6%": an image's first `n` automatic tags ((tag, probability) pairs or catalogue
    rows with .tag and .prob), most probable first; "" for none."""
    pairs = [(t.tag, t.prob) if hasattr(t, "tag") else (t[0], t[1]) for t in list(tags)[:n]]
    return " · ".join(f"{tag} {prob:.0%}" for tag, prob in pairs)


def short_path(path: str, parts: int = 2) -> str:
    """The last `parts` folders of a path ("…/101_ObjectCategories/Leopards"), for narrow widgets."""
    pieces = [p for p in str(path).split("/") if p]
    return str(path) if len(pieces) <= parts else "…/" + "/".join(pieces[-parts:])


RESULT_LEGEND = ("similarity: cosine similarity of the image features to the query (1 = the same image, "
                 "higher = more alike). predicted: the classifier's (SVM) class, with its probability.")


def image_details(row: Any, extra_paths: Sequence[str] = (), cluster_names: Mapping[str, str] | None = None
                  ) -> list[tuple[str, str]]:
    """(field, value) rows describing one catalogue image for its detail view. `cluster_names`: "kmeans" /
    "agglomerative" -> the cluster's name (views.cluster_name), when known."""
    names = cluster_names or {}

    def cluster(key: str, value: int | None) -> str:
        return "–" if value is None else names.get(key, str(value))

    predicted = "–" if row.predicted_label is None else (
        f"{display_label(row.predicted_label)} ({fmt_prob(row.predicted_prob)}, SVM)")
    created = getattr(row, "created_at", None)
    rows = [
        ("file", row.file_name), ("path", row.path), ("folder", row.source_folder),
        ("label", "–" if row.label is None else f"{display_label(row.label)} (raw: {row.label})"),
        ("predicted", predicted),
        ("size", f"{row.size_bytes / 1024:,.1f} KiB"), ("resolution", f"{row.width} × {row.height} px"),
        ("K-Means cluster", cluster("kmeans", row.kmeans_cluster)),
        ("agglomerative cluster", cluster("agglomerative", row.agglo_cluster)),
        ("duplicate group", "none" if row.duplicate_group is None else f"group {row.duplicate_group}"),
        *photo_details(row),
        ("tags", tags_text(getattr(row, "tags", None) or []) or "none"),
        ("ingested", "–" if created is None else f"{created:%Y-%m-%d %H:%M} UTC"),
        ("image id", str(row.id)),
    ]
    if extra_paths:
        rows.append(("also found at", "; ".join(extra_paths)))
    return rows


def photo_details(row: Any) -> list[tuple[str, str]]:
    """The date taken (and where that date comes from), camera, lens and place rows of an image's details; only
    those known."""
    out = []
    taken = photo_info.taken_text(row)
    if taken is not None:
        offset = getattr(row, "taken_at_offset", None)
        zone = "" if offset is None else f" (UTC{offset // 60:+03d}:{offset % 60:02d})"
        source = photo_info.SOURCES.get(getattr(row, "taken_at_source", None) or "", "")
        out.append(("taken", f"{taken}{zone}" + (f", from {source}" if source else "")))
    for name in ("camera", "lens"):
        if getattr(row, name, None):
            out.append((name, str(getattr(row, name))))
    place = photo_info.place_text(row)
    if place is not None:
        altitude = getattr(row, "altitude", None)
        out.append(("place", place + ("" if altitude is None else f", {altitude:,.0f} m")))
    return out


def top_classes(proba: np.ndarray | Sequence[float], classes: Sequence[str], n: int = 5) -> pd.DataFrame:
    """proba: (n_classes,) -> the n most probable classes, most probable first."""
    proba = np.asarray(proba, dtype=float).reshape(-1)
    order = np.argsort(-proba, kind="stable")[:n]
    return pd.DataFrame({"label": [str(classes[i]) for i in order], "probability": proba[order]})


def probability_figure(top: pd.DataFrame) -> go.Figure:
    fig = px.bar(top.iloc[::-1], x="probability", y="label", orientation="h", range_x=[0, 1], text_auto=".1%")
    fig.update_layout(height=60 + 36 * len(top), margin=dict(l=0, r=0, t=10, b=0), yaxis_title=None)
    return fig


def describe_filter(flt: Filter) -> list[str]:
    """Human-readable conditions of a filter, one per active condition (the payload schema's wording)."""
    return flt.describe()


def describe_compact(flt: Filter, max_values: int = 5) -> list[str]:
    """Like Filter.describe, but a long list of values reads "label: 102 values (apples, bonsai, …)"."""
    out = []
    for f, value in flt.conditions():
        shown = [display_label(str(v)) if f.key.endswith("label") else str(v) for v in value] \
            if f.match == "any" else value
        if f.match == "any" and len(value) > max_values:
            out.append(f"{f.noun}: {len(value)} values ({', '.join(shown[:3])}, …)")
        elif f.match == "any" and value:  # display labels ("wild cat", not "wild_cat"), as the widgets show them
            out.append(f"{f.noun} is one of: {', '.join(shown)}")
        else:
            out.extend(Filter.on({f.key: value}).describe())
    return out


def drop_hints(flt: Filter, count_without) -> list[str]:
    """For a filter that matches nothing: what each condition's removal would give ("drop X: 12 matches").

    count_without(key) -> how many images match with the condition on payload key `key` left out.
    """
    hints = []
    for f, value in flt.conditions():
        n = count_without(f.key)
        if n:
            (line,) = describe_compact(Filter.on({f.key: value}))
            hints.append((n, f"without “{line}”: {n:,} match"))
    return [h for _, h in sorted(hints, key=lambda x: -x[0])]


def empty_result_reason(flt: Filter, n_indexed: int) -> str:
    if n_indexed == 0:
        return "The collection is empty."
    conditions = describe_compact(flt)
    if not conditions:
        return "No neighbours were found."
    return "No indexed image matches all of these filters: " + "; ".join(conditions) + "."


def pca_frame(xb: np.ndarray, payloads: Sequence[Mapping[str, Any]], random_state: int = 0) -> pd.DataFrame:
    """xb: (n, d) -> 2-D PCA coordinates with file name, label and both clusters per point."""
    from sklearn.decomposition import PCA

    n = len(xb)
    xy = np.zeros((n, 2)) if n < 2 else PCA(n_components=2, random_state=random_state).fit_transform(xb)
    rows = [{"x": float(xy[i, 0]), "y": float(xy[i, 1]), "file_name": p.get("file_name", ""),
             "label": p.get("label") or "(none)",
             "kmeans_cluster": _cluster_name(p.get("kmeans_cluster")),
             "agglo_cluster": _cluster_name(p.get("agglo_cluster"))} for i, p in enumerate(payloads)]
    return pd.DataFrame(rows, columns=["x", "y", "file_name", "label", "kmeans_cluster", "agglo_cluster"])


def _cluster_name(c: int | None) -> str:
    return "(none)" if c is None else str(c)


def pca_figure(frame: pd.DataFrame, color: str) -> go.Figure:
    fig = px.scatter(frame, x="x", y="y", color=color, hover_name="file_name",
                     hover_data={"label": True, "kmeans_cluster": True, "agglo_cluster": True, "x": False, "y": False})
    fig.update_traces(marker=dict(size=5, opacity=0.75))
    fig.update_layout(height=560, margin=dict(l=0, r=0, t=10, b=0), xaxis_title="PC 1", yaxis_title="PC 2")
    return fig


def confusion_figure(labels: Sequence[str], matrix: Sequence[Sequence[int]], normalise: bool = False) -> go.Figure:
    """Rows = true class, columns = predicted class. `normalise`: each row as shares of its class, on a log colour
    scale, so the few confusions are visible beside the diagonal and small classes count as much as large ones."""
    m = np.asarray(matrix, dtype=float)
    shown = [display_label(x) for x in labels]
    if normalise:
        rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        z = np.log10(np.maximum(rates, 1e-3))  # 0.1% and below share the lightest colour
        fig = go.Figure(go.Heatmap(
            z=z, x=shown, y=shown, colorscale="Blues", zmin=-3, zmax=0, customdata=rates,
            hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata:.1%} of the class<extra></extra>",
            colorbar=dict(title="share", tickvals=[-3, -2, -1, 0], ticktext=["≤0.1%", "1%", "10%", "100%"])))
        fig.update_yaxes(autorange="reversed")
    else:
        fig = px.imshow(m.astype(int), x=shown, y=shown, color_continuous_scale="Blues",
                        text_auto=len(labels) <= 30, labels=dict(x="predicted", y="true", color="images"),
                        aspect="auto")
    side = min(2400, 200 + 14 * len(labels))
    fig.update_layout(height=side, margin=dict(l=0, r=0, t=10, b=0), xaxis_title="predicted", yaxis_title="true")
    fig.update_yaxes(tickmode="array", tickvals=shown, ticktext=shown, tickfont=dict(size=9))
    fig.update_xaxes(tickmode="array", tickvals=shown, ticktext=shown, tickfont=dict(size=9))
    return fig


def confused_pairs(labels: Sequence[str], matrix: Sequence[Sequence[int]], n: int = 20) -> pd.DataFrame:
    """The `n` most frequent mistakes (true class predicted as another), most first, with their share of the
    true class: what a 102-class matrix hides in 2-pixel cells."""
    m = np.asarray(matrix, dtype=int)
    support = m.sum(axis=1)
    off = m.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    order = np.lexsort((cols, rows, -off[rows, cols]))[:n]
    return pd.DataFrame({
        "true": [display_label(labels[rows[i]]) for i in order],
        "predicted as": [display_label(labels[cols[i]]) for i in order],
        "images": [int(off[rows[i], cols[i]]) for i in order],
        "share of the true class": [off[rows[i], cols[i]] / max(support[rows[i]], 1) for i in order],
        "true (raw)": [labels[rows[i]] for i in order],
        "predicted (raw)": [labels[cols[i]] for i in order],
    })


def class_table(rows: Iterable[Any]) -> pd.DataFrame:
    """Per-class rows (objects or dicts with label, precision, recall, f1, support), worst F1 first."""
    def get(row, name):
        return row[name] if isinstance(row, Mapping) else getattr(row, name)

    frame = pd.DataFrame(
        [{k: get(r, k) for k in ("label", "precision", "recall", "f1", "support")} for r in rows],
        columns=["label", "precision", "recall", "f1", "support"],
    )
    return frame.sort_values(["f1", "recall", "label"], kind="stable").reset_index(drop=True)


def runs_frame(runs: Iterable[Any]) -> pd.DataFrame:
    cols = ["id", "kind", "outcome", "started_at", "finished_at", "backbone", "n_images", "n_skipped",
            "n_failed", "n_duplicates", "dataset_path", "message"]
    return pd.DataFrame([{c: getattr(r, c) for c in cols} for r in runs], columns=cols)


def metric_history(runs: Sequence[Any], metrics: Mapping[int, Mapping[str, float]]) -> pd.DataFrame:
    """Long frame (run_id, started_at, metric, value) over the given runs, oldest first."""
    rows = [{"run_id": r.id, "started_at": r.started_at, "metric": name, "value": value}
            for r in runs for name, value in metrics.get(r.id, {}).items()]
    frame = pd.DataFrame(rows, columns=["run_id", "started_at", "metric", "value"])
    return frame.sort_values(["run_id", "metric"]).reset_index(drop=True)


def metric_legend(name: str) -> str:
    """The registry's label with its model ("K-Means: silhouette"); the stored name if it is not registered."""
    metric = registry.METRICS.get(name)
    return name if metric is None else metric.legend


def history_figure(history: pd.DataFrame, names: Sequence[str]) -> go.Figure | None:
    """Lines of the given metrics across runs, one per metric, labelled from the registry."""
    part = history[history["metric"].isin(list(names))]
    if part.empty:
        return None
    part = part.assign(metric=part["metric"].map(metric_legend))
    fig = px.line(part, x="run_id", y="value", color="metric", markers=True, hover_data=["started_at"],
                  labels={"metric": ""})
    fig.update_layout(height=300, margin=dict(l=0, r=0, t=10, b=0), xaxis_title="training run")
    fig.update_xaxes(type="category")  # run ids, not a continuous scale (one run drew an axis from 1 to 3)
    return fig


def skipped_frame(skipped: Iterable[Any]) -> pd.DataFrame:
    """(path, reason, message) tuples or SkippedFile rows."""
    rows = [s if isinstance(s, tuple) else (s.path, s.reason, s.message) for s in skipped]
    return pd.DataFrame(rows, columns=["path", "reason", "message"])


# ---- the feature map (Clusters page) ----------------------------------------------------------------------

# "Colour by" choice -> column of map_frame; clusters first: the map's default.
MAP_COLOURS = {"K-Means cluster": "kmeans_cluster", "agglomerative cluster": "agglo_cluster", "label": "label",
               "predicted label": "predicted_label"}
MAP_COLUMNS = ["id", "pca_x", "pca_y", "umap_x", "umap_y", "file_name", "label", "predicted_label",
               "kmeans_cluster", "agglo_cluster"]


def palette(n: int) -> list[str]:
    """n distinct colours: hues a golden angle apart, three lightness levels, so 100 classes do not repeat
    every 10 colours as plotly's qualitative palettes do."""
    import colorsys

    out = []
    for i in range(n):
        r, g, b = colorsys.hls_to_rgb((i * 0.618034) % 1.0, (0.42, 0.58, 0.32)[i % 3], 0.72)
        out.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return out


def map_frame(ids: Sequence[int] | np.ndarray, pca: np.ndarray, umap: np.ndarray | None, rows: Mapping[int, Any],
              cluster_names: Mapping[str, Mapping[int, str]] | None = None) -> pd.DataFrame:
    """One row per mapped image still in the catalogue (`rows`: id -> catalogue row), with both projections and
    the display names to colour and hover by."""
    names = cluster_names or {}

    def cluster(algorithm: str, value: int | None) -> str:
        return "(none)" if value is None else names.get(algorithm, {}).get(value, str(value))

    out = []
    for i, image_id in enumerate(ids):
        row = rows.get(int(image_id))
        if row is None:  # removed since the map was computed
            continue
        out.append({"id": int(image_id), "pca_x": float(pca[i, 0]), "pca_y": float(pca[i, 1]),
                    "umap_x": None if umap is None else float(umap[i, 0]),
                    "umap_y": None if umap is None else float(umap[i, 1]),
                    "file_name": row.file_name, "label": display_label(row.label) if row.label else "(none)",
                    "predicted_label": display_label(row.predicted_label) if row.predicted_label else "(none)",
                    "kmeans_cluster": cluster("kmeans", row.kmeans_cluster),
                    "agglo_cluster": cluster("agglomerative", row.agglo_cluster)})
    return pd.DataFrame(out, columns=MAP_COLUMNS)


def map_figure(frame: pd.DataFrame, projection: str, color: str, max_names: int = 60) -> go.Figure:
    """One scatter trace (fast to draw and to recolour), each point's colour from `color`'s category, its image
    id in customdata (for click-to-open); category names at their medians when there are at most `max_names`."""
    x, y = frame[f"{projection}_x"], frame[f"{projection}_y"]
    categories = sorted(frame[color].unique(), key=lambda c: (c == "(none)", _natural(c)))
    colours = dict(zip(categories, palette(len(categories)), strict=True))
    fig = go.Figure(go.Scatter(
        x=x, y=y, mode="markers", marker=dict(size=6, opacity=0.8, color=frame[color].map(colours)),
        customdata=frame[["id", "file_name", "label", color]].to_numpy(),
        hovertemplate="%{customdata[1]}<br>label: %{customdata[2]}<br>%{customdata[3]}<extra></extra>",
        name="images"))
    if len(categories) <= max_names:
        centre = frame.assign(_x=x, _y=y).groupby(color)[["_x", "_y"]].median()
        # A cluster by its number only ("7", its full name on hover): fifty full names hide the points.
        text = [c.split(" · ", 1)[0] if "cluster" in color else c for c in centre.index]
        fig.add_trace(go.Scatter(x=centre["_x"], y=centre["_y"], mode="text", text=text,
                                 textfont=dict(size=10, color="#222"), hoverinfo="skip", name="names"))
    axis = {"umap": "UMAP", "pca": "PC"}[projection]
    fig.update_layout(height=620, margin=dict(l=0, r=0, t=10, b=0), showlegend=False, clickmode="event+select",
                      xaxis_title=f"{axis} 1", yaxis_title=f"{axis} 2", dragmode="pan")
    return fig


def _natural(text: str) -> tuple:
    """Sort key that puts "2 · …" before "10 · …"."""
    head = text.split(" ", 1)[0]
    return (0, int(head), text) if head.isdigit() else (1, 0, text)
