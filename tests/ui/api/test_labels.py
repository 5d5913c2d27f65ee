"""/v1/labels/{name}/...: teaching a label through the API (its own copy of the tiny trained collection)."""

from __future__ import annotations

from tests.ui.api.conftest import error_of


def _ids_of(client, label: str) -> list[int]:
    client.get("/v1/labels/x")  # the database opened
    from imgsearch.db import repository as repo

    state = client.app.state.api
    with state.Session() as s:
        return sorted(i for i, r in repo.images_by_ids(s, range(1, 1000)).items() if r.label == label)


def test_examples_candidates_accept_reject_and_done(client):
    apples = _ids_of(client, "apples")
    r = client.post("/v1/labels/red/examples", json={"positive": apples[:3]})
    assert r.status_code == 200, r.text
    assert r.json() == {"label": "red", "n_labelled": 3, "n_negative": 0, "n_skipped": 0, "n_reviewed": 3,
                        "ready": True}
    r = client.get("/v1/labels/red/candidates", params={"k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] in ("linear", "rocchio") and len(body["candidates"]) == 4
    found = [c["id"] for c in body["candidates"]]
    assert set(found[:3]) == set(apples[3:]) and body["candidates"][0]["label"] == "apples"
    r = client.post("/v1/labels/red/accept", json={"ids": found[:3]})
    assert r.status_code == 200 and r.json()["n_labelled"] == 6
    r = client.post("/v1/labels/red/reject", json={"ids": found[3:]})
    assert r.status_code == 200 and r.json()["n_negative"] == 1
    r = client.post("/v1/labels/red/skip", json={"ids": []})
    assert r.status_code == 200 and r.json()["n_reviewed"] == 7
    again = [c["id"] for c in client.get("/v1/labels/red/candidates", params={"k": 100}).json()["candidates"]]
    assert not set(again) & set(found) and len(again) == 18 - 7
    assert client.get("/v1/labels/red").json()["n_labelled"] == 6
    r = client.post("/v1/labels/red/done")
    assert r.status_code == 202 and r.json()["kind"] == "train" and r.json()["status"] == "queued"


def test_refusals_are_json_errors(client):
    msg = error_of(client.get("/v1/labels/nobody/candidates"), 422, "invalid_request")
    assert "at least 3" in msg
    msg = error_of(client.post("/v1/labels/blue/examples", json={"positive": [1, 2, 99999]}), 404, "not_found")
    assert "99999" in msg
    error_of(client.post("/v1/labels/blue/accept", json={"ids": [0]}), 422, "invalid_request")
    error_of(client.get("/v1/labels/blue/candidates", params={"method": "svm"}), 422, "invalid_request")
