"""Search by words (search/text_query.py): words -> WordNet terms -> ImageNet classes -> images ranked by tag
probability; unknown words name the close known ones."""

from __future__ import annotations

import pytest

from imgsearch.models.tags import UnknownWords, imagenet_vocabulary
from imgsearch.search.text_query import TagIndex, parse_query, tag_classes

VOC = imagenet_vocabulary()


def test_dog_covers_every_breed_and_nothing_else():
    (concept,) = parse_query("dog").concepts
    names = {VOC.classes[i] for i in concept.classes}
    assert {"Pekinese", "golden retriever", "dalmatian", "Chihuahua", "toy poodle"} <= names
    assert len(names) >= 118 and not names & {"tabby", "umbrella", "hotdog", "grey fox"}
    for text in ("dogs", "Dog", "a photo of a dog"):
        (same,) = parse_query(text).concepts
        assert (same.terms, same.classes) == (concept.terms, concept.classes)


def test_a_known_phrase_is_one_concept_and_broader_terms_find_their_classes():
    assert [c.words for c in parse_query("golden retriever").concepts] == ["golden retriever"]
    assert [VOC.classes[i] for i in parse_query("golden retriever").concepts[0].classes] == ["golden retriever"]
    birds = {VOC.classes[i] for i in parse_query("bird").concepts[0].classes}
    assert {"flamingo", "goldfinch", "bald eagle", "ostrich"} <= birds and "Pekinese" not in birds
    assert [c.words for c in parse_query("dog umbrella").concepts] == ["dog", "umbrella"]


def test_an_unknown_word_names_the_close_known_words():
    with pytest.raises(UnknownWords) as info:
        parse_query("dgo umbrela")
    assert "dog" in info.value.suggestions["dgo"] and "umbrella" in info.value.suggestions["umbrela"]
    assert "dgo" in str(info.value) and "close:" in str(info.value)
    with pytest.raises(ValueError, match="no words"):
        parse_query("a photo of")


def _index() -> TagIndex:
    rows = [
        (1, "Pekinese", 0.9), (1, "umbrella", 0.06),
        (2, "golden retriever", 0.5), (2, "Labrador retriever", 0.3),  # a dog at 0.8 in all
        (3, "tabby", 0.95),
        (4, "umbrella", 0.7), (4, "Chihuahua", 0.2),
        (5, "not an ImageNet class", 0.9),  # a head with other classes: ignored
    ]
    return TagIndex([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], VOC)


def test_ranked_by_the_summed_probability_of_the_classes_under_the_words():
    index = _index()
    hits = index.search("dog", k=10)
    assert [h.id for h in hits] == [1, 2, 4]  # 0.9, 0.5 + 0.3, 0.2
    assert hits[1].score == pytest.approx(0.8)
    assert [h.id for h in index.search("dog", k=2)] == [1, 2]
    assert [h.id for h in index.search("cat")] == [3] and index.search("car") == []


def test_several_words_must_all_match_and_their_scores_multiply():
    hits = _index().search("dog umbrella")
    assert [h.id for h in hits] == [4, 1]  # 0.2 * 0.7 = 0.14 before 0.9 * 0.06 = 0.054
    assert hits[0].score == pytest.approx(0.14)


def test_other_filters_are_applied_in_rank_order_until_k_pass():
    asked = []

    def accept(ids):
        asked.append(list(ids))
        return [i != 1 for i in ids]

    assert [h.id for h in _index().search("dog", k=1, accept=accept)] == [2]
    assert asked == [[1, 2, 4]]
    assert _index().search("dog", accept=lambda ids: [False] * len(ids)) == []


def test_tag_classes_turn_terms_into_the_catalogue_tags_below_them():
    assert "Pekinese" in tag_classes(["dog"]) and "tabby" not in tag_classes(["dog"])
    assert tag_classes(["umbrella"]) == ["umbrella"]
