"""Images by id, jobs, runs, statistics, health and readiness."""

from __future__ import annotations

import io

from PIL import Image

from tests.ui.api.conftest import error_of, ids_by_label

# ---- images by id --------------------------------------------------------------------------------------------


def test_image_metadata(client, served):
    image_id = ids_by_label(client)["apples"][0]
    r = client.get(f"/v1/images/{image_id}")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["id"] == image_id and info["label"] == "apples" and info["status"] == "indexed"
    assert (info["width"], info["height"]) == (48, 40)
    assert info["path"].startswith(str(served.photos)) and info["predicted_label"] == "apples"
    assert info["extra_paths"] == []
    error_of(client.get("/v1/images/999999"), 404, "not_found")
    error_of(client.get("/v1/images/x"), 422, "invalid_request")


def test_image_file_and_thumbnail(client):
    image_id = ids_by_label(client)["sky"][0]
    info = client.get(f"/v1/images/{image_id}").json()
    r = client.get(f"/v1/images/{image_id}/file")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    with open(info["path"], "rb") as f:
        assert r.content == f.read()
    r = client.get(f"/v1/images/{image_id}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(r.content))
    assert thumb.format == "JPEG" and max(thumb.size) <= 256
    for what in ("file", "thumbnail"):
        error_of(client.get(f"/v1/images/999999/{what}"), 404, "not_found")


def test_a_path_is_never_taken_from_the_request(client):
    for url in ("/v1/images/..%2F..%2Fetc%2Fpasswd/file", "/v1/images/%2Fetc%2Fpasswd/thumbnail"):
        r = client.get(url)
        assert r.status_code in (404, 422) and r.json()["error"]["code"] in ("not_found", "invalid_request")
    image_id = ids_by_label(client)["sky"][0]
    r = client.get(f"/v1/images/{image_id}/file", params={"path": "/etc/passwd"})  # ignored
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


def test_image_file_gone_from_disk(client):
    image_id = ids_by_label(client)["grass"][-1]
    path = client.get(f"/v1/images/{image_id}").json()["path"]
    moved = path + ".moved"
    import os

    os.rename(path, moved)
    try:
        error_of(client.get(f"/v1/images/{image_id}/file"), 404, "file_missing")
        error_of(client.get(f"/v1/images/{image_id}/thumbnail"), 404, "file_missing")
    finally:
        os.rename(moved, path)


# ---- jobs --------------------------------------------------------------------------------------------------------


def test_queue_ingest_inside_the_allowed_roots(client, served):
    r = client.post("/v1/jobs/ingest", json={"folder": str(served.inbox / "good"), "labels_from_folders": False})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "ingest" and job["status"] == "queued" and job["folder"] == str(served.inbox / "good")
    # The same confinement the app's Ingest page hands the worker.
    assert job["options"] == {"labels_from_folders": False, "confine_to": [str(served.inbox)]}
    assert job["progress"] is None and job["n_total"] == 0
    listed = client.get("/v1/jobs").json()
    assert listed[0]["id"] == job["id"]
    assert client.get(f"/v1/jobs/{job['id']}").json()["folder"] == job["folder"]
    assert job["id"] in [j["id"] for j in client.get("/v1/jobs", params={"status": "queued"}).json()]
    # Cancel while queued; a second cancel (no longer queued) is refused.
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    error_of(client.post(f"/v1/jobs/{job['id']}/cancel"), 409, "not_cancellable")


def test_job_progress(client, served):
    from imgsearch.db import jobs

    job_id = client.post("/v1/jobs/ingest", json={"folder": str(served.inbox)}).json()["id"]
    with client.app.state.api.Session.begin() as s:  # what the worker reports as it goes
        jobs.update_job_progress(s, job_id, n_total=8, n_done=2)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert (job["n_done"], job["n_total"], job["progress"]) == (2, 8, 0.25)
    client.post(f"/v1/jobs/{job_id}/cancel")


def test_ingest_folders_outside_the_allowed_roots_are_refused(client, served):
    before = len(client.get("/v1/jobs").json())
    for folder in (str(served.photos), str(served.root / "outside"), "/etc",
                   str(served.inbox / ".." / "outside"),  # escaping through ..
                   str(served.inbox / "link"),  # a symlink inside the root pointing out of it
                   str(served.inbox / "missing"), "", "a\x00b"):
        message = error_of(client.post("/v1/jobs/ingest", json={"folder": folder}), 422, "folder_rejected")
        assert message
    assert "outside the folders" in error_of(
        client.post("/v1/jobs/ingest", json={"folder": str(served.inbox / "link")}), 422, "folder_rejected")
    assert len(client.get("/v1/jobs").json()) == before  # nothing was queued
    error_of(client.post("/v1/jobs/ingest", json={}), 422, "invalid_request")
    error_of(client.post("/v1/jobs/ingest", json={"folder": 3}), 422, "invalid_request")


def test_queue_training(client):
    r = client.post("/v1/jobs/train", json={"force": True})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "train" and job["folder"] == "" and job["options"] == {"force": True}
    assert client.post("/v1/jobs/train").json()["options"] == {"force": False}
    for j in (job["id"], job["id"] + 1):
        client.post(f"/v1/jobs/{j}/cancel")


def test_job_errors(client):
    error_of(client.get("/v1/jobs/999999"), 404, "not_found")
    error_of(client.post("/v1/jobs/999999/cancel"), 404, "not_found")
    error_of(client.get("/v1/jobs", params={"status": "sleeping"}), 422, "invalid_request")
    error_of(client.get("/v1/jobs", params={"limit": 0}), 422, "invalid_request")


# ---- runs, statistics ---------------------------------------------------------------------------------------------


def test_runs_and_metrics(client):
    runs = client.get("/v1/runs").json()
    kinds = [r["kind"] for r in runs]
    assert "train" in kinds and "ingest" in kinds
    train = next(r for r in runs if r["kind"] == "train")
    assert train["outcome"] == "ok" and train["backbone"] == "tiny" and train["metrics"]
    assert all(isinstance(v, float) for v in train["metrics"].values())
    one = client.get(f"/v1/runs/{train['id']}").json()
    assert one["metrics"] == train["metrics"]
    assert [r["kind"] for r in client.get("/v1/runs", params={"kind": "ingest"}).json()] == ["ingest"]
    error_of(client.get("/v1/runs/999999"), 404, "not_found")
    error_of(client.get("/v1/runs", params={"kind": "nap"}), 422, "invalid_request")


def test_stats(client):
    stats = client.get("/v1/stats").json()
    assert stats["indexed"] == stats["catalogued"] == 18
    assert {c["label"]: c["count"] for c in stats["labels"]} == {"apples": 6, "grass": 6, "sky": 6}
    for name in ("kmeans", "agglomerative"):
        rows = stats["clusters"][name]
        assert sum(r["size"] for r in rows) == 18 and len(rows) == 3
        assert all(r["purity"] == 1.0 for r in rows)  # the tiny backbone separates the three classes
        assert sorted(r["title"] for r in rows) == ["apples 100%", "grass 100%", "sky 100%"]
        assert all(r["top_labels"] == [[r["dominant_label"], 6]] for r in rows)
    assert stats["filter_choices"]["label"] == ["apples", "grass", "sky"]


# ---- health, readiness, docs -------------------------------------------------------------------------------------


def test_health_and_readiness(client, backbone):
    assert client.get("/v1/health").json() == {"status": "ok"}
    r = client.get("/v1/ready")
    assert r.status_code == 200, r.text
    ready = r.json()
    assert ready["ready"] and ready["database"] == "ok" and ready["stores"] == "ok"
    assert ready["models"] == "loaded" and isinstance(ready["model_run_id"], int) and ready["indexed"] == 18
    assert ready["backbone"] == {"name": "tiny", "dim": backbone.dim, "weights_sha256": backbone.weights_sha256}


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    assert spec["info"]["version"] == "v1" and all(p.startswith("/v1/") for p in spec["paths"])
    assert client.get("/docs").status_code == 200


def test_unknown_route_and_method_are_json_errors(client):
    error_of(client.get("/v1/nothing"), 404, "not_found")
    error_of(client.delete("/v1/stats"), 405, "method_not_allowed")
