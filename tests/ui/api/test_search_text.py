"""GET /v1/search/text: images by the words of their automatic tags (ui/services/text_search.py), ranked by tag
probability, with every filter of the image search, each hit with its tags; an unknown word is a 422 with the
close known words."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.ui.api.conftest import error_of, make_app


@pytest.fixture(scope="module")
def client(tagged_collection, backbone):
    with TestClient(make_app(tagged_collection.data_dir, backbone, dataset_dir=tagged_collection.photos)) as c:
        yield c


def test_words_find_the_tagged_images_with_scores_and_tags(client):
    r = client.get("/v1/search/text", params={"q": "dogs", "k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "dogs" and "118 classes" in body["words"] and "dog" in body["terms"]
    assert body["ranking"] == "tag probability" and body["filters"] == []
    hits = body["results"]
    assert len(hits) == 6 and {h["label"] for h in hits} == {"apples"}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and all(0.05 <= s <= 1 for s in scores)
    for h in hits:  # each hit's own tags: the leaf class, with the probability the score is made of
        assert [t["tag"] for t in h["tags"]] == ["Irish setter"]
        assert h["tags"][0]["probability"] == pytest.approx(h["score"], abs=1e-6)


def test_k_offset_and_filters_compose(client):
    everything = client.get("/v1/search/text", params={"q": "animal", "k": 20}).json()["results"]
    assert len(everything) == 18
    page = client.get("/v1/search/text", params={"q": "animal", "k": 4, "offset": 4}).json()["results"]
    assert [h["id"] for h in page] == [h["id"] for h in everything[4:8]]
    r = client.get("/v1/search/text", params={"q": "animal", "label": ["sky", "grass"], "k": 20})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["filters"] == ["label is one of: sky, grass"]
    assert {h["label"] for h in body["results"]} == {"sky", "grass"} and len(body["results"]) == 12
    cluster = everything[0]["kmeans_cluster"]
    hits = client.get("/v1/search/text", params={"q": "animal", "kmeans_cluster": cluster, "k": 20}).json()["results"]
    assert hits and all(h["kmeans_cluster"] == cluster for h in hits)
    none = client.get("/v1/search/text", params={"q": "bird", "label": "grass"}).json()
    assert none["results"] == []


def test_unknown_words_are_a_422_with_close_known_words(client):
    r = client.get("/v1/search/text", params={"q": "lizzard"})
    message = error_of(r, 422, "unknown_words")
    assert "'lizzard' (close: lizard" in message
    assert "lizard" in r.json()["error"]["suggestions"]["lizzard"]
    error_of(client.get("/v1/search/text", params={"q": "a photo of"}), 422, "invalid_request")
    error_of(client.get("/v1/search/text", params={"q": ""}), 422, "invalid_request")
    error_of(client.get("/v1/search/text"), 422, "invalid_request")
    error_of(client.get("/v1/search/text", params={"q": "dog", "k": 0}), 422, "invalid_request")


def test_the_openapi_document_lists_the_route_and_its_filters(client):
    spec = client.get("/openapi.json").json()
    params = {p["name"] for p in spec["paths"]["/v1/search/text"]["get"]["parameters"]}
    assert {"q", "k", "offset", "label", "tags", "min_confidence"} <= params
