"""Clusters are named by their labels' shares of the members: one label only when it is over half of them."""

from __future__ import annotations

from imgsearch.ui.services.cluster_names import cluster_title, percent
from imgsearch.ui.web import views


def _row(cluster: int, size: int, counts: dict[str | None, int], tags=()) -> dict:
    """A db.collection.cluster_summary row from its label counts (None: unlabelled members)."""
    labelled = {k: v for k, v in counts.items() if k is not None}
    ranked = sorted(labelled.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"cluster": cluster, "size": size, "labelled": sum(labelled.values()), "top_labels": ranked[:3],
            "n_labels": len(ranked), "dominant_label": ranked[0][0] if ranked else None, "top_tags": list(tags)}


def test_a_cluster_without_a_majority_label_is_named_mixed_with_its_shares():
    # 1000 members: gramophone 13.6%, metronome 11%, then eight smaller labels; the old name was "mostly gramophone"
    counts = {"gramophone": 136, "metronome": 110, "cup": 95, **{f"other{i}": 82 for i in range(8)}, None: 3}
    row = _row(7, 1000, counts)
    assert views.cluster_name(row) == "7 · mixed: gramophone 14%, metronome 11%, cup 10%, …, <1% unlabelled"


def test_a_cluster_with_a_majority_label_is_named_by_it_and_its_share():
    row = _row(3, 50, {"Leopards": 47, "cougar_body": 3}, tags=["leopard"])
    assert views.cluster_name(row) == "3 · Leopards 94%"
    assert views.cluster_name(_row(3, 5, {"054_sunflower": 5})) == "3 · sunflower 100%"


def test_shares_are_of_every_member_so_unlabelled_ones_are_counted():
    # 60 of 100 dogs is a majority of the members; 40 of 100 is not, even though every labelled member is a dog
    assert cluster_title(_row(1, 100, {"dog": 60, None: 40})) == "dog 60%"
    assert cluster_title(_row(1, 100, {"dog": 40, None: 60})) == "mixed: dog 40%, 60% unlabelled"
    # exactly half is not a majority
    assert cluster_title(_row(1, 10, {"dog": 5, "cat": 5})) == "mixed: cat 50%, dog 50%"


def test_a_cluster_without_labels_keeps_its_tag_name():
    assert views.cluster_name(_row(4, 9, {None: 9}, tags=["tabby", "tiger cat"])) == "4 · tagged tabby, tiger cat"
    assert views.cluster_name(_row(4, 9, {None: 9})) == "4 · unlabelled"
    assert views.cluster_name({"cluster": 4}) == "4 · unlabelled"  # a cluster the summary does not know


def test_percentages_never_round_to_nothing_or_to_everything():
    assert [percent(s) for s in (0.001, 0.136, 0.996, 1.0)] == ["<1%", "14%", "99%", "100%"]
