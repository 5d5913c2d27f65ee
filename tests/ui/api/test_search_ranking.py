"""The API's search hits carry the curation fields; class-aware ranking and collapsed near-duplicates on request."""

from __future__ import annotations

from tests.ui.api.conftest import ids_by_label, png


def test_hits_carry_near_duplicate_group_uniqueness_and_quality(client):
    image_id = ids_by_label(client)["apples"][0]
    body = client.get(f"/v1/images/{image_id}/neighbours?k=5").json()
    assert body["ranking"] == "cosine"
    hits = body["results"]
    # The tiny backbone's generated classes are near-duplicate groups; the images are 48 x 40 px: "tiny".
    assert all(h["duplicate_group"] is not None and h["quality"] == "tiny" for h in hits)
    assert all(isinstance(h["uniqueness"], float) for h in hits)


def test_class_aware_and_collapsed_neighbours(client):
    image_id = ids_by_label(client)["apples"][0]
    aware = client.get(f"/v1/images/{image_id}/neighbours?k=5&class_aware=true").json()
    assert aware["ranking"] == "class-aware" and len(aware["results"]) == 5
    collapsed = client.get(f"/v1/images/{image_id}/neighbours?k=10&collapse_duplicates=true").json()
    groups = [h["duplicate_group"] for h in collapsed["results"]]
    assert len(groups) == len(set(groups)) == 3 and collapsed["ranking"] == "cosine, near-duplicates collapsed"
    up = client.post("/v1/search?k=3&class_aware=true&collapse_duplicates=true",
                     files={"file": ("q.png", png(), "image/png")})
    assert up.status_code == 200, up.text
    assert up.json()["ranking"] == "class-aware, near-duplicates collapsed"


def test_openapi_documents_the_options_and_fields(client):
    spec = client.get("/openapi.json").json()
    params = {p["name"] for p in spec["paths"]["/v1/images/{image_id}/neighbours"]["get"]["parameters"]}
    assert {"class_aware", "collapse_duplicates"} <= params
    hit = spec["components"]["schemas"]["SearchHit"]["properties"]
    assert {"duplicate_group", "uniqueness", "quality"} <= set(hit)
