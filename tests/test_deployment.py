"""docker-compose.yml and the Dockerfile agree with the settings object (no Docker engine needed)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from imgsearch.ui.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_qdrant_ports_volume_healthcheck(compose):
    services = compose["services"]
    assert set(services) == {"qdrant", "worker", "app", "api"}
    qdrant = services["qdrant"]
    assert qdrant["image"].startswith("qdrant/qdrant:v")  # pinned, never :latest
    assert {p.split(":")[1].split()[0] for p in qdrant["ports"]} == {"6333", "6334"}
    volume = qdrant["volumes"][0].split(":")
    assert volume[1] == "/qdrant/storage" and volume[0] in compose["volumes"]
    assert "6333" in " ".join(qdrant["healthcheck"]["test"])
    for name in ("worker", "app", "api"):
        assert services[name]["depends_on"]["qdrant"]["condition"] == "service_healthy"
        assert services[name]["build"] == "."


@pytest.mark.parametrize("service", ["worker", "app", "api"])
def test_environment_maps_onto_settings(compose, service, monkeypatch):
    env = compose["services"][service]["environment"]
    fields = set(Settings.model_fields)
    for key in env:
        assert key.startswith("IMGSEARCH_") and key.removeprefix("IMGSEARCH_").lower() in fields, key
    for key, value in env.items():
        monkeypatch.setenv(key, value.replace("${IMGSEARCH_BACKBONE:-auto}", "auto").replace("${IMGSEARCH_API_KEY:-}",
                                                                                            "k"))
    settings = Settings()
    url = urlparse(settings.qdrant_url)
    assert url.hostname == "qdrant" and url.port == 6333  # the qdrant service's REST port
    assert settings.data_dir == Path("/data")
    assert settings.allowed_roots == [Path("/photos")]
    data_volume = next(v for v in compose["services"][service]["volumes"] if v.endswith(":/data"))
    assert data_volume.split(":")[0] in compose["volumes"]
    photos = next(v for v in compose["services"][service]["volumes"] if ":/photos" in v)
    assert photos.endswith(":ro")  # the app and worker only read photos


def test_app_port_and_commands(compose):
    app = compose["services"]["app"]
    assert "8501:8501" in app["ports"]
    assert app["command"][:2] == ["imgsearch", "app"] and "8501" in app["command"]
    assert compose["services"]["worker"]["command"][:2] == ["imgsearch", "worker"]


def test_api_listens_beyond_the_container_only_with_a_key(compose):
    api = compose["services"]["api"]
    assert api["profiles"] == ["api"]  # opt-in: `docker compose --profile api up`
    assert api["command"][:2] == ["imgsearch", "serve"] and "0.0.0.0" in api["command"]
    assert "8000:8000" in api["ports"]
    assert api["environment"]["IMGSEARCH_API_KEY"] == "${IMGSEARCH_API_KEY:-}"  # serve refuses to start without


def test_dockerfile_installs_every_package():
    text = (ROOT / "Dockerfile").read_text()
    for package in ("ingest", "search", "models", "ui", "db"):
        assert f"COPY {package} {package}" in text
    assert "pip install ." in text
