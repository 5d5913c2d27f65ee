"""Search by upload and by id (FAISS), filtered search (Qdrant), recommend, classify: results and bad input."""

from __future__ import annotations

import pytest

from tests.ui.api.conftest import bomb_png, error_of, ids_by_label, png, truncated_png


def _upload(path) -> dict:
    return {"file": (path.name, path.read_bytes(), "image/jpeg")}


# ---- ranked neighbours (FAISS) -------------------------------------------------------------------------------


def test_search_by_id_returns_same_class_first_and_leaves_itself_out(client):
    labels = ids_by_label(client)
    query = labels["apples"][0]
    r = client.get(f"/v1/images/{query}/neighbours", params={"k": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == "faiss" and body["query"] == f"image {query}" and body["k"] == 8
    hits = body["results"]
    assert len(hits) == 8 and query not in [h["id"] for h in hits]
    assert [h["label"] for h in hits[:5]] == ["apples"] * 5  # the other five apples first
    assert all(h["label"] != "apples" for h in hits[5:])
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    first = hits[0]
    assert first["file_name"].startswith("apples_") and first["path"].endswith(first["file_name"])
    assert first["predicted_label"] == "apples" and 0 < first["predicted_prob"] <= 1
    assert isinstance(first["kmeans_cluster"], int) and isinstance(first["agglo_cluster"], int)


def test_search_pagination(client):
    query = ids_by_label(client)["grass"][0]
    whole = client.get(f"/v1/images/{query}/neighbours", params={"k": 6}).json()["results"]
    first = client.get(f"/v1/images/{query}/neighbours", params={"k": 3}).json()["results"]
    second = client.get(f"/v1/images/{query}/neighbours", params={"k": 3, "offset": 3}).json()
    assert second["offset"] == 3
    assert [h["id"] for h in first + second["results"]] == [h["id"] for h in whole]
    beyond = client.get(f"/v1/images/{query}/neighbours", params={"k": 5, "offset": 100}).json()
    assert beyond["results"] == []


def test_search_by_upload_finds_its_class_and_leaves_its_own_entry_out(client, served):
    path = sorted((served.photos / "sky").glob("*.jpg"))[0]
    r = client.post("/v1/search", files=_upload(path), params={"k": 5})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert [h["label"] for h in hits] == ["sky"] * 5
    assert path.name not in [h["file_name"] for h in hits]  # the upload is catalogued: its own entry is left out


def test_search_by_upload_of_a_new_image(client):
    r = client.post("/v1/search", files={"file": ("q.png", png(colour=(40, 170, 40)), "image/png")})
    assert r.status_code == 200, r.text
    assert len(r.json()["results"]) == 10 and r.json()["query"] == "upload"


@pytest.mark.parametrize("params", [{"k": 0}, {"k": 5000}, {"k": "many"}, {"offset": -1}])
def test_bad_k_or_offset(client, params):
    query = ids_by_label(client)["sky"][0]
    error_of(client.get(f"/v1/images/{query}/neighbours", params=params), 422, "invalid_request")


def test_unknown_id(client):
    error_of(client.get("/v1/images/999999/neighbours"), 404, "not_found")
    error_of(client.get("/v1/images/999999/neighbours/filtered", params={"label": "sky"}), 404, "not_found")
    error_of(client.get("/v1/images/abc/neighbours"), 422, "invalid_request")


# ---- bad uploads -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "code"), [
    (b"", "empty"),
    (b"hello, I am text", "not_image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt"),
    (truncated_png(), "truncated"),
    (bomb_png(), "too_large"),
], ids=["empty", "not_image", "corrupt", "truncated", "bomb"])
@pytest.mark.parametrize("endpoint", ["/v1/search", "/v1/search/filtered", "/v1/classify"])
def test_bad_uploads_are_refused_with_the_decode_reason(client, endpoint, data, code):
    message = error_of(client.post(endpoint, files={"file": ("x.png", data, "image/png")}), 422, code)
    assert message


def test_missing_file_field(client):
    error_of(client.post("/v1/search"), 422, "invalid_request")


# ---- filtered search (Qdrant) -----------------------------------------------------------------------------------


def test_label_filter_returns_only_that_label(client):
    labels = ids_by_label(client)
    query = labels["apples"][0]
    r = client.get(f"/v1/images/{query}/neighbours/filtered", params={"label": "grass", "k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == "qdrant" and body["filters"] == ["label is one of: grass"]
    assert sorted(h["id"] for h in body["results"]) == labels["grass"]


def test_repeated_list_filter_and_bounds(client):
    labels = ids_by_label(client)
    query = labels["apples"][0]
    r = client.get(f"/v1/images/{query}/neighbours/filtered?label=grass&label=sky&k=20&min_confidence=0")
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert {h["label"] for h in hits} == {"grass", "sky"} and len(hits) == 12
    # K-Means cluster of the query: the filter returns that cluster only (the query itself left out).
    cluster = client.get(f"/v1/images/{query}").json()["kmeans_cluster"]
    r = client.get(f"/v1/images/{query}/neighbours/filtered", params={"kmeans_cluster": cluster, "k": 20})
    hits = r.json()["results"]
    assert hits and all(h["kmeans_cluster"] == cluster for h in hits) and query not in [h["id"] for h in hits]
    # A folder filter, as the CLI parses it (resolved), and an impossible confidence floor.
    r = client.get(f"/v1/images/{query}/neighbours/filtered", params={"source_folder": "/nowhere", "k": 5})
    assert r.status_code == 200 and r.json()["results"] == []


def test_filtered_search_by_upload(client, served):
    path = sorted((served.photos / "grass").glob("*.jpg"))[0]
    r = client.post("/v1/search/filtered", files=_upload(path), params={"label": ["sky"], "k": 3})
    assert r.status_code == 200, r.text
    assert [h["label"] for h in r.json()["results"]] == ["sky"] * 3
    unfiltered = client.post("/v1/search/filtered", files=_upload(path), params={"k": 3}).json()
    assert unfiltered["filters"] == [] and [h["label"] for h in unfiltered["results"]] == ["grass"] * 3


@pytest.mark.parametrize("query", ["kmeans_cluster=abc", "agglo_cluster=1.5", "min_confidence=2",
                                   "min_confidence=-0.1", "min_confidence=high"])
def test_wrong_typed_filter_values(client, query):
    image_id = ids_by_label(client)["sky"][0]
    message = error_of(client.get(f"/v1/images/{image_id}/neighbours/filtered?{query}"), 422, "invalid_request")
    assert query.split("=")[0] in message
    error_of(client.post(f"/v1/search/filtered?{query}", files={"file": ("q.png", png(), "image/png")}),
             422, "invalid_request")


def test_every_filter_field_is_a_query_parameter(client):
    from imgsearch.search.payload import FILTER_FIELDS

    spec = client.get("/openapi.json").json()
    params = {p["name"] for p in spec["paths"]["/v1/search/filtered"]["post"]["parameters"]}
    expected = {f.key if f.match == "any" else f.name for f in FILTER_FIELDS}
    assert expected <= params
    params = {p["name"]: p for p in spec["paths"]["/v1/images/{image_id}/neighbours/filtered"]["get"]["parameters"]}
    assert expected <= set(params)
    assert params["label"]["schema"]["anyOf"][0]["type"] == "array"
    assert {"taken_after", "taken_before", "camera", "near", "radius_km", "has_location"} <= set(params)


def test_date_camera_and_place_query_parameters(client):
    image_id = ids_by_label(client)["sky"][0]
    url = f"/v1/images/{image_id}/neighbours/filtered"
    # The test collection's images carry no EXIF: dated by their files (today, or so), without camera or place.
    r = client.get(f"{url}?taken_after=2000-01-01&has_location=false")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results"] and body["filters"] == ["date taken on or after 2000-01-01", "has no place"]
    for query in ("taken_before=2000-01-01", "camera=Apple%20iPhone%2013", "near=38.72,-9.14,25km",
                  "near=38.72,-9.14&radius_km=25", "has_location=true"):
        r = client.get(f"{url}?{query}")
        assert r.status_code == 200 and r.json()["results"] == [], (query, r.text)
    for query, message in [("near=38.72", "LAT,LON"), ("radius_km=3", "needs a place"),
                           ("taken_after=2020-02-30", "taken_after"),
                           ("taken_after=2021-01-01&taken_before=2020-01-01", "later than")]:
        assert message in error_of(client.get(f"{url}?{query}"), 422, "invalid_request"), query


# ---- recommend ---------------------------------------------------------------------------------------------------


def test_recommend_likes_the_positive_examples(client):
    labels = ids_by_label(client)
    positive, negative = labels["apples"][:2], labels["grass"][:1]
    r = client.post("/v1/recommend", json={"positive": positive, "negative": negative, "k": 4})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert len(hits) == 4 and [h["label"] for h in hits] == ["apples"] * 4
    assert not {h["id"] for h in hits} & set(positive + negative)  # the examples are left out


def test_recommend_with_a_filter_and_pagination(client):
    labels = ids_by_label(client)
    r = client.post("/v1/recommend?label=sky", json={"positive": labels["apples"][:1], "k": 3})
    assert r.status_code == 200, r.text
    assert [h["label"] for h in r.json()["results"]] == ["sky"] * 3
    page = client.post("/v1/recommend?offset=2", json={"positive": labels["apples"][:1], "k": 2}).json()
    whole = client.post("/v1/recommend", json={"positive": labels["apples"][:1], "k": 4}).json()
    assert [h["id"] for h in page["results"]] == [h["id"] for h in whole["results"][2:]]


def test_recommend_bad_input(client):
    labels = ids_by_label(client)
    error_of(client.post("/v1/recommend", json={"positive": [999999]}), 404, "not_found")
    error_of(client.post("/v1/recommend", json={"positive": labels["sky"][:1], "negative": [999999]}), 404,
             "not_found")
    error_of(client.post("/v1/recommend", json={"positive": []}), 422, "invalid_request")
    error_of(client.post("/v1/recommend", json={"positive": ["x"]}), 422, "invalid_request")
    error_of(client.post("/v1/recommend", json={"positive": [1], "negative": [1]}), 422, "invalid_request")
    error_of(client.post("/v1/recommend", content=b"{not json", headers={"content-type": "application/json"}),
             422, "invalid_request")
    error_of(client.post("/v1/recommend?kmeans_cluster=x", json={"positive": [1]}), 422, "invalid_request")


# ---- classify ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_classify_upload(client, served):
    path = sorted((served.photos / "grass").glob("*.jpg"))[0]
    r = client.post("/v1/classify", files=_upload(path), params={"k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "svm" and isinstance(body["run_id"], int)
    preds = body["predictions"]
    assert len(preds) == 2 and preds[0]["label"] == "grass" and preds[0]["probability"] >= preds[1]["probability"]
    forest = client.post("/v1/classify", files=_upload(path), params={"model": "random_forest"}).json()
    assert forest["model"] == "random_forest" and forest["predictions"][0]["label"] == "grass"
    error_of(client.post("/v1/classify", files=_upload(path), params={"model": "knn"}), 422, "invalid_request")


def test_concurrent_queries(client, served):
    """Queries from several threads at once (the endpoints run in the threadpool) all answer, and right."""
    from concurrent.futures import ThreadPoolExecutor

    labels = ids_by_label(client)
    paths = sorted((served.photos / "apples").glob("*.jpg"))

    def by_id(image_id):
        return client.get(f"/v1/images/{image_id}/neighbours", params={"k": 3}).json()["results"]

    def by_upload(path):
        return client.post("/v1/search", files=_upload(path), params={"k": 3}).json()["results"]

    with ThreadPoolExecutor(8) as pool:
        id_results = list(pool.map(by_id, labels["sky"] * 2))
        upload_results = list(pool.map(by_upload, paths))
    assert all([h["label"] for h in hits] == ["sky"] * 3 for hits in id_results)
    assert all([h["label"] for h in hits] == ["apples"] * 3 for hits in upload_results)
