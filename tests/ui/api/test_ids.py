"""Ids and other integers past what the catalogue stores (int64), folder names the OS refuses, and a Qdrant server
that cannot be reached: a clear 4xx or 503, never a 500. Every route of the OpenAPI document is walked, so a new
route is covered without an edit here."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient

from tests.ui.api.conftest import error_of, ids_by_label, make_app, png

TOO_BIG = (2**63, 2**64)  # one past int64, and one past uint64


def _integer_schema(schema: dict) -> str | None:
    """'one' for an integer, 'many' for a list of integers (optional or not), else None."""
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "integer":
            return "one"
        if option.get("type") == "array" and option.get("items", {}).get("type") == "integer":
            return "many"
    return None


def _integer_inputs(spec: dict):
    """(method, path template, where, name, kind) of every integer a route takes: path, query or JSON body."""
    components = spec.get("components", {}).get("schemas", {})
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            for p in op.get("parameters", []):
                kind = _integer_schema(p.get("schema", {}))
                if kind is not None:
                    yield method, path, p["in"], p["name"], kind
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            ref = next((o["$ref"] for o in body.get("anyOf", [body]) if "$ref" in o), None)
            if ref is not None:
                for name, prop in components[ref.rsplit("/", 1)[1]].get("properties", {}).items():
                    kind = _integer_schema(prop)
                    if kind is not None:
                        yield method, path, "body", name, kind


def _request(client: TestClient, method: str, path: str, where: str, name: str, kind: str, value: int):
    """The route called with `value` in `name` and 1 (or a minimal valid body) everywhere else."""
    params: dict = {}
    body = {"positive": [1]} if path.endswith("/recommend") else None
    url = path
    for placeholder in [part[1:-1] for part in path.split("/") if part.startswith("{")]:
        url = url.replace(f"{{{placeholder}}}", str(value if (where, name) == ("path", placeholder) else 1))
    if where == "query":
        params[name] = [value] if kind == "many" else value
    elif where == "body":
        body = {**(body or {}), name: [value] if kind == "many" else value}
    files = {"file": ("q.png", png(), "image/png")} if path.endswith(("/search", "/filtered", "/classify")) \
        and method == "post" else None
    return client.request(method, url, params=params, json=body, files=files)


@pytest.mark.slow
def test_every_integer_input_of_every_route_refuses_values_past_int64(client):
    inputs = list(_integer_inputs(client.get("/openapi.json").json()))
    ids = {(path, name) for _, path, where, name, _ in inputs if name.endswith("_id") or where == "body"}
    # The walk finds what it must: every id in a path, the filter's integers, recommend's example ids.
    assert {("/v1/images/{image_id}/file", "image_id"), ("/v1/runs/{run_id}", "run_id"),
            ("/v1/jobs/{job_id}/cancel", "job_id"), ("/v1/recommend", "positive")} <= ids
    assert {name for *_, name, _ in inputs} >= {"kmeans_cluster", "agglo_cluster", "duplicate_group"}
    for method, path, where, name, kind in inputs:
        for value in (*TOO_BIG, -(2**63) - 1):
            r = _request(client, method, path, where, name, kind, value)
            assert 400 <= r.status_code < 500, f"{method.upper()} {path} {where} {name}={value}: {r.status_code}"
            assert r.json()["error"]["code"] in ("invalid_request", "not_found"), r.text


@pytest.mark.parametrize("url", ["/v1/images/{}", "/v1/images/{}/file", "/v1/images/{}/thumbnail",
                                 "/v1/images/{}/neighbours", "/v1/images/{}/neighbours/filtered", "/v1/runs/{}",
                                 "/v1/jobs/{}"])
def test_the_largest_id_is_a_plain_not_found(client, url):
    from imgsearch.ui.api.schemas import MAX_ID

    error_of(client.get(url.format(MAX_ID)), 404, "not_found")
    for beyond in (MAX_ID + 1, 2**63 - 1, 0):  # ids start at 1
        error_of(client.get(url.format(beyond)), 422, "invalid_request")


def test_large_filter_values_within_int64_are_searched(client):
    query = ids_by_label(client)["sky"][0]
    for value in (2**63 - 1, -(2**63)):
        r = client.get(f"/v1/images/{query}/neighbours/filtered", params={"kmeans_cluster": value})
        assert r.status_code == 200 and r.json()["results"] == [], r.text


def test_an_ingest_folder_name_the_os_refuses_is_a_422(client, served):
    for folder in (served.inbox / ("a" * 300), served.inbox / ("a" * 300) / "b", served.inbox / ("x/" * 3000)):
        message = error_of(client.post("/v1/jobs/ingest", json={"folder": str(folder)}), 422, "folder_rejected")
        assert "too long" in message.lower()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


def test_an_unreachable_qdrant_server_is_a_503_everywhere(served, backbone):
    app = make_app(served.data_dir, backbone, dataset_dir=served.photos,
                   qdrant_url=f"http://127.0.0.1:{_closed_port()}")
    image_id = ids_by_label(served.client)["sky"][0]
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, url, kwargs in (
            ("get", f"/v1/images/{image_id}/neighbours", {}),
            ("get", f"/v1/images/{image_id}/neighbours/filtered", {"params": {"label": "sky"}}),
            ("post", "/v1/search", {"files": {"file": ("q.png", png(), "image/png")}}),
            ("post", "/v1/recommend", {"json": {"positive": [image_id]}}),
        ):
            message = error_of(client.request(method, url, **kwargs), 503, "store_unreachable")
            assert "127.0.0.1" in message
        ready = client.get("/v1/ready")
        assert ready.status_code == 503 and ready.json()["stores"].startswith("store_unreachable")


def test_an_unexpected_error_is_answered_inside_the_app(served, backbone, monkeypatch):
    """A 500 is answered without the exception reaching the server, which would close the keep-alive connection
    (TestClient re-raises exactly what would reach the server)."""
    app = make_app(served.data_dir, backbone, dataset_dir=served.photos)

    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.state.api, "service", boom)
    with TestClient(app) as client:  # raise_server_exceptions=True
        r = client.post("/v1/search", files={"file": ("q.png", png(), "image/png")})
        message = error_of(r, 500, "internal_error")
        assert "secret" not in message
