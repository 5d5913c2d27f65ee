"""Unit tests of the pure helpers behind the pages: upload and folder checks, tables and figures."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from imgsearch.ingest.decode import ImageRejected
from imgsearch.search.index import Filter
from imgsearch.ui.services import inputs
from imgsearch.ui.web import captions, views


def test_handle_upload_decodes_in_memory_and_names_the_problem():
    out = io.BytesIO()
    Image.new("RGBA", (10, 8), (0, 0, 0, 0)).save(out, format="PNG")
    img = inputs.handle_upload(out.getvalue(), max_pixels=1000)
    assert img.mode == "RGB" and img.size == (10, 8)
    with pytest.raises(ImageRejected) as exc:
        inputs.handle_upload(out.getvalue(), max_pixels=10)
    assert exc.value.reason == "too_large"
    assert inputs.upload_error(exc.value).startswith("The uploaded image is too large")


def test_allowed_roots_default_to_data_and_dataset(tmp_path):
    assert inputs.allowed_roots([], tmp_path / "d", None) == [(tmp_path / "d").resolve()]
    assert inputs.allowed_roots([tmp_path / "x"], tmp_path / "d", tmp_path / "ds") == [(tmp_path / "x").resolve()]


def test_validate_folder(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "f.txt").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    roots = [root.resolve()]
    assert inputs.validate_folder(str(root / "a"), roots) == (root / "a").resolve()
    assert inputs.validate_folder(f" {root} ", roots) == root.resolve()
    for text, words in [("", "Enter"), (str(root / "a" / ".." / ".." / "outside"), "outside"),
                        (str(root / "link"), "outside"), (str(root / "nope"), "does not exist"),
                        (str(root / "f.txt"), "not a directory"), ("a\x00b", "NUL")]:
        with pytest.raises(inputs.FolderRejected, match=words):
            inputs.validate_folder(text, roots)


def test_top_classes_and_figure():
    top = views.top_classes(np.array([0.1, 0.6, 0.05, 0.2, 0.03, 0.02]), list("abcdef"), n=5)
    assert list(top.label) == ["b", "d", "a", "c", "e"]
    assert views.probability_figure(top).data[0].orientation == "h"


def test_filter_descriptions():
    flt = Filter(labels=["cat"], min_confidence=0.8, folders=[])
    text = views.empty_result_reason(flt, n_indexed=10)
    assert "label is one of: cat" in text and "confidence ≥ 80%" in text and "folder is one of: (nothing" in text
    assert views.empty_result_reason(Filter(), 0) == "The collection is empty."


def test_class_table_worst_first_and_history():
    rows = [{"label": "a", "precision": 1, "recall": 1, "f1": 1.0, "support": 3},
            SimpleNamespace(label="b", precision=0.5, recall=0.4, f1=0.45, support=2)]
    assert list(views.class_table(rows).label) == ["b", "a"]
    runs = [SimpleNamespace(id=2, started_at=None), SimpleNamespace(id=1, started_at=None)]
    hist = views.metric_history(runs, {1: {"svm.accuracy": 0.5}, 2: {"svm.accuracy": 0.7, "other": 1.0}})
    assert list(hist.run_id) == [1, 2, 2]
    fig = views.history_figure(hist, ["svm.accuracy"])
    assert [trace.name for trace in fig.data] == ["SVM: val accuracy"]  # the legend reads the registry
    assert views.history_figure(hist, ["kmeans.silhouette"]) is None
    assert views.metric_legend("other") == "other"


def test_history_charts_come_from_the_registry():
    charts = views.HISTORY_CHARTS
    assert charts["Davies–Bouldin (lower is better)"] == ["kmeans.davies_bouldin", "agglomerative.davies_bouldin"]
    assert charts["Silhouette (higher is better)"] == ["kmeans.silhouette", "agglomerative.silhouette"]
    assert charts["Validation accuracy (higher is better)"] == ["svm.accuracy", "random_forest.accuracy"]
    assert charts["Retrieval (higher is better)"] == ["retrieval_loo.p@10", "retrieval_loo.map@10",
                                                      "retrieval_val.p@10", "retrieval_val.map@10"]


def test_pca_frame_and_confusion_figure():
    rng = np.random.default_rng(0)
    xb = rng.normal(size=(20, 8)).astype(np.float32)
    payloads = [{"file_name": f"{i}.jpg", "label": "a" if i % 2 else None, "kmeans_cluster": i % 3} for i in range(20)]
    frame = views.pca_frame(xb, payloads)
    assert frame.shape == (20, 6) and set(frame.label) == {"a", "(none)"} and frame.agglo_cluster[0] == "(none)"
    assert len(views.pca_figure(frame, "label").data) == 2
    fig = views.confusion_figure(["a", "b"], [[3, 1], [0, 4]])
    assert fig.data[0].z.tolist() == [[3, 1], [0, 4]]


def test_display_label_strips_numeric_prefixes_and_underscores():
    assert views.display_label("054_sunflower") == "sunflower"
    assert views.display_label("Faces_easy") == "Faces easy"
    assert views.display_label("2024") == "2024"  # all digits: nothing left to strip
    assert views.display_label(None) == "–"


def test_job_progress_lines_have_rate_and_time_left():
    from datetime import UTC, datetime, timedelta

    from imgsearch.ingest.heartbeat import Beat
    from imgsearch.ui.services import job_status
    from imgsearch.ui.services.job_status import JobView

    now = datetime(2026, 1, 1, tzinfo=UTC)
    job = JobView(3, "ingest", "/photos/flowers", "running", 100, 400, 0, now - timedelta(seconds=20), None, None, None)
    frac, text = job_status.progress(job, now)
    assert frac == 0.25
    assert text == "Job 3 · ingest of flowers: 100 of 400 images · 5.0 img/s · about 1 min 00 s left"
    scanning = JobView(4, "ingest", "/p", "running", 0, 0, 0, now, None, None, None)
    assert job_status.progress(scanning, now)[1].endswith("scanning the folder…")
    assert job_status.progress(JobView(5, "train", "", "queued", 0, 0, 0, None, None, None, None), now) == (
        None, "Job 5 · training: queued")
    alive, line = job_status.worker_status([], 2)
    assert not alive and line.startswith("No worker is running: 2 queued job(s)")
    beat = Beat("worker", 1, "h", 0.0, __import__("time").time() - 3, 7)
    alive, line = job_status.worker_status([beat], 0)
    assert alive and "running job 7" in line


def test_confused_pairs_are_the_largest_off_diagonal_cells_first():
    labels = ["001_cat", "dog", "emu"]
    matrix = [[8, 2, 0], [1, 9, 0], [0, 3, 1]]
    pairs = views.confused_pairs(labels, matrix, n=2)
    assert list(zip(pairs["true"], pairs["predicted as"], pairs["images"], strict=True)) == [
        ("emu", "dog", 3), ("cat", "dog", 2)]
    assert pairs["share of the true class"].tolist() == [0.75, 0.2]
    assert views.confused_pairs(labels, np.diag([3, 4, 5])).empty
    fig = views.confusion_figure(labels, matrix, normalise=True)
    z = np.asarray(fig.data[0].z)
    assert np.isclose(z[1, 1], np.log10(0.9)) and np.isclose(z[2, 1], np.log10(0.75))  # row shares, log scale


def test_card_caption_shows_scores_and_prediction_whole_and_the_raw_label_as_tooltip():
    r = SimpleNamespace(score=0.9871, file_name="image_<1>.jpg", label="054_sunflower", predicted_label="012_rose",
                        predicted_prob=0.8)
    html = captions.result_caption(r)
    assert "similarity <b>0.987</b>" in html and ">image_&lt;1&gt;.jpg</code>" in html  # escaped
    assert '<span title="raw label: 054_sunflower">sunflower</span>' in html
    assert '<span title="raw label: 012_rose">rose</span> <span style="white-space:nowrap">(80%)</span>' in html
    assert html.count("text-overflow:ellipsis") == 2  # file name and label: one line each, cut
    # the score and the prediction wrap rather than being cut; the prediction keeps two lines, so cards line up
    assert html.count("white-space:normal") == 2 and "min-height:2lh" in html
    assert "predicted: – <span" in captions.card_caption("", "a.jpg", None, None, None)
    ranked = captions.result_caption(SimpleNamespace(**vars(r), rank_score=1.5432))
    assert "score <b>1.543</b> · similarity <b>0.987</b>" in ranked  # the score that ranked it first, both labelled


def test_image_details_name_every_field():
    from datetime import UTC, datetime

    row = SimpleNamespace(id=7, file_name="a.jpg", path="/p/cats/a.jpg", source_folder="/p/cats", label="01_cat",
                          predicted_label="01_cat", predicted_prob=0.91, size_bytes=2048, width=640, height=480,
                          kmeans_cluster=3, agglo_cluster=None, duplicate_group=5,
                          created_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC))
    details = dict(views.image_details(row, ["/p/copy/a.jpg"], {"kmeans": "3 · cat 94%"}))
    assert details["path"] == "/p/cats/a.jpg" and details["folder"] == "/p/cats"
    assert details["label"] == "cat (raw: 01_cat)" and details["predicted"] == "cat (91%, SVM)"
    assert details["size"] == "2.0 KiB" and details["resolution"] == "640 × 480 px"
    assert details["K-Means cluster"] == "3 · cat 94%" and details["agglomerative cluster"] == "–"
    assert details["duplicate group"] == "group 5" and details["ingested"] == "2026-01-02 03:04 UTC"
    assert details["also found at"] == "/p/copy/a.jpg"


def test_map_frame_and_figure_colour_without_recomputing():
    rows = {i: SimpleNamespace(file_name=f"{i}.jpg", label=f"0{i % 2}_x{i % 2}", predicted_label=None,
                               kmeans_cluster=i % 3, agglo_cluster=None) for i in range(1, 7)}
    pca = np.arange(14, dtype=float).reshape(7, 2)
    frame = views.map_frame([1, 2, 3, 4, 5, 6, 99], pca, pca * 2, rows, {"kmeans": {0: "0 · x0 100%"}})
    assert list(frame["id"]) == [1, 2, 3, 4, 5, 6]  # 99 left the catalogue since the map was made
    assert set(frame["kmeans_cluster"]) == {"0 · x0 100%", "1", "2"} and set(frame["agglo_cluster"]) == {"(none)"}
    assert frame.loc[0, "umap_x"] == 0.0 and frame.loc[1, "umap_y"] == 6.0
    fig = views.map_figure(frame, "umap", "kmeans_cluster")
    points, names = fig.data
    assert list(points.customdata[:, 0]) == [1, 2, 3, 4, 5, 6]  # the ids a click reports
    assert len(set(points.marker.color)) == 3 and sorted(names.text) == ["0", "1", "2"]  # numbers only
    assert fig.layout.xaxis.title.text == "UMAP 1"
    assert len(views.map_figure(frame, "pca", "label", max_names=1).data) == 1  # too many to name
    colours = views.palette(102)
    assert len(set(colours)) == 102  # no colour repeats among 102 classes
