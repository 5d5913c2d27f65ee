"""`imgsearch serve`: refuses to listen beyond this machine without a key; the real server answers an upload;
the OpenAPI schema it publishes is valid."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import run_cli
from tests.ui.api_server import ApiServer
from tests.ui.web.conftest import build_collection


def test_serve_beyond_loopback_needs_a_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("IMGSEARCH_API_KEY", raising=False)
    code, out = run_cli(["serve", "--host", "0.0.0.0"], tmp_path / "data", capsys, monkeypatch)
    assert code == 2 and "set IMGSEARCH_API_KEY" in out and "X-API-Key" in out


@pytest.mark.slow
def test_openapi_schema_is_valid(tmp_path, monkeypatch):
    from openapi_spec_validator import validate

    from imgsearch.ui.api.app import create_app
    from imgsearch.ui.services.settings import Settings

    schema = create_app(Settings(data_dir=tmp_path / "data", backbone="tiny")).openapi()
    validate(schema)
    assert any(path.startswith("/v1/") for path in schema["paths"])


@pytest.mark.slow
def test_real_server_answers_an_upload(tmp_path, backbone):
    collection = build_collection(tmp_path, backbone)
    query = collection.photos / "grass" / "grass_002.jpg"
    with ApiServer(collection.data_dir, collection.env()) as server:
        response = httpx.post(f"{server.url}/v1/search", params={"k": 5}, timeout=60,
                              files={"file": (query.name, query.read_bytes(), "image/jpeg")})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert len(results) == 5
        # The upload is a catalogued image: its own entry is left out, as in the CLI, and its class comes first.
        assert "grass_002.jpg" not in {r["file_name"] for r in results}
        assert {r["label"] for r in results} == {"grass"}
        scores = [r["score"] for r in results]
        assert scores == sorted(scores, reverse=True) and scores[0] < 1.0
        assert httpx.get(f"{server.url}/openapi.json", timeout=10).status_code == 200
