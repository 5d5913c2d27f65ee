"""The metric registry: names match their group, formats and titles, and the layouts built from it."""

from __future__ import annotations

import pytest

from imgsearch.models import metric_registry as registry


def test_every_name_is_prefixed_by_its_group():
    for m in registry.METRICS.values():
        if m.group is registry.COUNTS:
            assert "." not in m.name
        else:
            assert m.name.startswith(f"{m.group.key}."), m.name


def test_format_shows_a_dash_for_missing_and_nan_and_integers_for_counts():
    accuracy, images = registry.METRICS["svm.accuracy"], registry.METRICS["n_images"]
    assert accuracy.format(0.94181) == "0.9418" and images.format(8677.0) == "8677"
    assert accuracy.format(None) == images.format(float("nan")) == "—"
    assert registry.METRICS["kmeans.nmi"].format(0.8041) == "0.804"
    assert registry.formatted({}, "retrieval_loo.hit@10") == "—"


def test_titles_say_which_way_is_better():
    assert registry.METRICS["kmeans.davies_bouldin"].title == "Davies–Bouldin (lower is better)"
    assert registry.METRICS["n_images"].title == "images"
    charts = registry.charts()
    assert [m.name for m in charts["Davies–Bouldin (lower is better)"]] == [
        "kmeans.davies_bouldin", "agglomerative.davies_bouldin"]
    assert [m.name for m in charts["Silhouette (higher is better)"]] == [
        "kmeans.silhouette", "agglomerative.silhouette"]


def test_a_retrieval_k_generates_every_kind_for_both_scopes():
    for scope in ("retrieval_loo", "retrieval_val"):
        for k in registry.RETRIEVAL_KS:
            for kind in (f"p@{k}", f"p@{k}_class_avg", f"map@{k}", f"map@{k}_class_avg", f"hit@{k}"):
                assert f"{scope}.{kind}" in registry.METRICS


def test_summary_lines_stay_within_their_group_in_registry_order():
    lines = registry.summary_lines()
    assert all({m.group for m in metrics} == {group} for group, _, metrics in lines)
    assert [text for group, text, _ in lines if group is registry.RETRIEVAL_VAL] == [
        "P@1 / P@5 / P@10", "P@10 class-averaged", "hit rate@10 (≥1 relevant in top 10)", "mAP@10 (micro / class-avg)"]


def test_a_name_registered_twice_is_refused():
    m = registry.METRICS["svm.accuracy"]
    with pytest.raises(ValueError, match="registered twice"):
        registry._index([m, m])
    assert registry.unregistered(["svm.accuracy", "svm.typo"]) == ["svm.typo"]


def test_retrieval_ks_past_the_headline_need_a_database_that_holds_them(monkeypatch):
    monkeypatch.setattr(registry, "RETRIEVAL_KS", (1, 5, 10, 20))
    assert registry.retrieval_ks(17) == (1, 5, 10)  # 18 images, leave-one-out
    assert registry.retrieval_ks(20) == (1, 5, 10, 20)
    assert registry.retrieval_ks(4) == (1, 5, 10)  # the headline k still fails loudly in retrieval_eval
    assert not any(m.optional for m in registry.METRICS.values() if m.group in registry.RETRIEVALS)
