"""API key, upload size limit, error mapping (never a stack trace), lifecycle: on their own small apps."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.ui.api.conftest import error_of, make_app, png


@pytest.fixture
def empty_dir(tmp_path):
    return tmp_path / "data"


@pytest.mark.slow
def test_api_key_required_when_set(empty_dir, backbone):
    with TestClient(make_app(empty_dir, backbone, key="s3cret")) as client:
        assert client.get("/v1/health").status_code == 200  # liveness needs no key
        for method, url in (("get", "/v1/stats"), ("get", "/v1/ready"), ("get", "/v1/jobs"), ("post", "/v1/search"),
                            ("get", "/v1/images/1/file"), ("post", "/v1/jobs/train")):
            r = getattr(client, method)(url)
            error_of(r, 401, "missing_api_key")
            assert r.headers["www-authenticate"] == "ApiKey"
            error_of(getattr(client, method)(url, headers={"X-API-Key": "wrong"}), 401, "invalid_api_key")
        r = client.get("/v1/stats", headers={"X-API-Key": "s3cret"})
        assert r.status_code == 200 and r.json()["indexed"] == 0
        spec = client.get("/openapi.json").json()
        assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_no_key_needed_without_one(empty_dir, backbone):
    with TestClient(make_app(empty_dir, backbone)) as client:
        assert client.get("/v1/stats").status_code == 200


def test_oversized_uploads_are_refused(empty_dir, backbone):
    with TestClient(make_app(empty_dir, backbone, upload_limit=1000)) as client:
        big = png((400, 400)) + b"\x00" * 200_000  # past the whole-body limit: refused from Content-Length
        message = error_of(client.post("/v1/search", files={"file": ("big.png", big, "image/png")}), 413,
                           "too_large")
        assert "MiB" in message
        small_but_over = b"\x00" * 5000  # within the body's envelope, over the file limit: refused while read
        error_of(client.post("/v1/classify", files={"file": ("x.png", small_but_over, "image/png")}), 413,
                 "too_large")


def test_chunked_body_over_the_limit(empty_dir, backbone):
    with TestClient(make_app(empty_dir, backbone, upload_limit=1000)) as client:
        def body():
            for _ in range(100):
                yield b"x" * 10_000

        r = client.post("/v1/search", content=body(),
                        headers={"content-type": "multipart/form-data; boundary=abc"})
        error_of(r, 413, "too_large")


def test_classify_without_models(empty_dir, backbone):
    with TestClient(make_app(empty_dir, backbone)) as client:
        message = error_of(client.post("/v1/classify", files={"file": ("q.png", png(), "image/png")}), 409,
                           "no_models")
        assert "train" in message


@pytest.mark.slow
def test_search_on_an_empty_collection(empty_dir, backbone):
    with TestClient(make_app(empty_dir, backbone)) as client:
        error_of(client.post("/v1/search", files={"file": ("q.png", png(), "image/png")}), 409, "empty_collection")
        ready = client.get("/v1/ready").json()
        assert ready["ready"] and ready["models"] == "none" and ready["indexed"] == 0


def _raising(exc):
    def fail(*args, **kwargs):
        raise exc

    return fail


def _errors():
    from imgsearch.models.persistence import ModelLoadError
    from imgsearch.search.index import StoreBusyError, StoreDamagedError
    from imgsearch.ui.services.errors import StoreMissingError

    return [
        (StoreBusyError("held by pid 1"), 503, "store_busy", "busy"),
        (StoreDamagedError("FAISS index", "/d", "/d/seg.npz", "bad zip"), 503, "store_damaged", "doctor --repair"),
        (StoreMissingError("The Qdrant store is empty"), 503, "store_missing", "imgsearch doctor --repair"),
        (ModelLoadError("svm.skops is missing"), 503, "models_unavailable", "svm.skops"),
        (RuntimeError("secret internals at /srv/x"), 500, "internal_error", "Internal server error"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("exc", "status", "code", "words"), _errors(), ids=lambda v: getattr(v, "__name__", None))
def test_known_failures_map_to_clear_json_errors(empty_dir, backbone, monkeypatch, exc, status, code, words):
    app = make_app(empty_dir, backbone)
    state = app.state.api
    monkeypatch.setattr(state, "require_intact", _raising(exc))
    monkeypatch.setattr(state, "trained", _raising(exc))
    with TestClient(app, raise_server_exceptions=False) as client:
        for r in (client.post("/v1/search", files={"file": ("q.png", png(), "image/png")}),
                  client.post("/v1/classify", files={"file": ("q.png", png(), "image/png")})):
            message = error_of(r, status, code)
            assert words in message
            if status == 500:
                assert "secret" not in r.text and "RuntimeError" not in r.text
        r = client.get("/v1/ready")
        if code.startswith("store"):
            assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
            assert r.json()["stores"].startswith(code)


def test_models_reloaded_when_a_new_run_is_current(empty_dir, backbone, monkeypatch):
    app = make_app(empty_dir, backbone)
    state = app.state.api
    loads = []

    class Fake:
        def __init__(self, run_id):
            self.run_id = run_id

    run = {"id": 1}
    monkeypatch.setattr(state.ctx, "trained_run_id", lambda: run["id"])
    monkeypatch.setattr(state.ctx, "trained", lambda lazy=False: loads.append((run["id"], lazy)) or Fake(run["id"]))
    assert state.trained().run_id == 1 and state.trained().run_id == 1
    run["id"] = 2
    assert state.trained().run_id == 2
    assert loads == [(1, True), (2, True)]  # loaded once per run, each model on first use (the forest is large)


@pytest.mark.slow
def test_context_closed_on_shutdown(empty_dir, backbone, monkeypatch):
    app = make_app(empty_dir, backbone)
    closed = []
    monkeypatch.setattr(app.state.api.ctx, "close", lambda: closed.append(True))
    with TestClient(app) as client:
        assert client.get("/v1/ready").status_code == 200
        assert not closed
    assert closed == [True]


def test_limits_and_key_from_the_settings(empty_dir, backbone):
    from imgsearch.ui.services.settings import Settings

    assert {"api_key", "max_upload_bytes"} <= set(Settings.model_fields)
    with TestClient(make_app(empty_dir, backbone, api_key="from-settings", max_upload_bytes=1000)) as client:
        error_of(client.get("/v1/stats"), 401, "missing_api_key")
        r = client.post("/v1/search", files={"file": ("x.png", b"\x00" * 5000, "image/png")},
                        headers={"X-API-Key": "from-settings"})
        error_of(r, 413, "too_large")
