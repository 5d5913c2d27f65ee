"""docker-compose.yml and the Dockerfile agree with the settings object (no Docker engine needed)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from imgsearch.ui.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = {"qdrant-1", "qdrant-2", "qdrant-3", "postgres", "cluster-worker", "cluster-app", "cluster-mirror"}
IMGSEARCH_CLUSTER = ("cluster-worker", "cluster-app", "cluster-mirror")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_qdrant_ports_volume_healthcheck(compose):
    services = compose["services"]
    by_profile: dict[str, set[str]] = {}
    for name, service in services.items():
        for profile in service.get("profiles", ["(default)"]):
            by_profile.setdefault(profile, set()).add(name)
    # `docker compose up` (no profile) starts exactly the single-node stack, as before the cluster profile.
    assert by_profile == {"(default)": {"qdrant", "worker", "app"}, "api": {"api"}, "cluster": CLUSTER}
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


# ---- profile `cluster`: 3 Qdrant nodes, PostgreSQL, N workers, the app, the mirror sync ----------------------------


def _expand(value: str) -> str:
    """A compose value with its ${VAR:-default} interpolations replaced by their defaults."""
    import re

    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_qdrant_nodes_form_one_cluster(compose):
    services = compose["services"]
    first = "http://qdrant-1:6335"
    for n in (1, 2, 3):
        node = services[f"qdrant-{n}"]
        assert node["image"] == services["qdrant"]["image"]  # one pinned version for both stacks
        assert node["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        assert node["environment"]["QDRANT__CLUSTER__P2P__PORT"] == "6335"
        command = node["command"]
        assert command[0] == "./qdrant"
        assert command[command.index("--uri") + 1] == f"http://qdrant-{n}:6335"  # how its peers reach it
        if n == 1:
            assert "--bootstrap" not in command  # the first node starts the cluster
        else:
            assert command[command.index("--bootstrap") + 1] == first
            assert node["depends_on"]["qdrant-1"]["condition"] == "service_healthy"
        assert "6333" in " ".join(node["healthcheck"]["test"])
        storage = node["volumes"][0].split(":")
        assert storage[1] == "/qdrant/storage" and storage[0] in compose["volumes"]
    own = [services[f"qdrant-{n}"]["volumes"][0].split(":")[0] for n in (1, 2, 3)]
    assert len(set(own)) == 3 and services["qdrant"]["volumes"][0].split(":")[0] not in own  # no shared storage
    published = [p for n in (1, 2, 3) for p in services[f"qdrant-{n}"].get("ports", [])]
    assert not any("6335" in p for p in published)  # p2p can write: it stays inside the compose network


def test_postgres_has_storage_and_healthcheck(compose):
    pg = compose["services"]["postgres"]
    assert pg["image"].startswith("postgres:") and pg["image"].split(":")[1][0].isdigit()  # pinned
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    volume = pg["volumes"][0].split(":")
    assert volume[1] == "/var/lib/postgresql/data" and volume[0] in compose["volumes"]


@pytest.mark.parametrize("service", IMGSEARCH_CLUSTER)
def test_cluster_service_settings_and_mounts(compose, service, monkeypatch):
    spec = compose["services"][service]
    assert spec["build"] == "."
    env = spec["environment"]
    fields = set(Settings.model_fields)
    for key, value in env.items():
        assert key.startswith("IMGSEARCH_") and key.removeprefix("IMGSEARCH_").lower() in fields, key
        monkeypatch.setenv(key, _expand(value))
    settings = Settings()
    url = urlparse(settings.qdrant_url)
    assert url.hostname in {"qdrant-1", "qdrant-2", "qdrant-3"} and url.port == 6333
    db = urlparse(settings.db_url)
    pg = compose["services"]["postgres"]["environment"]
    assert db.scheme == "postgresql+psycopg" and db.hostname == "postgres" and db.port == 5432
    assert (db.username, db.password, db.path.lstrip("/")) == (
        pg["POSTGRES_USER"], _expand(pg["POSTGRES_PASSWORD"]), pg["POSTGRES_DB"])
    config = settings.qdrant_collection  # a valid collection layout for 3 nodes
    assert config.shard_number == 3 and config.replication_factor == 2 and config.write_consistency_factor == 2
    assert config.write_ordering == "strong"
    # Every service that opens the stores waits for the whole cluster and the catalogue.
    assert {k for k, v in spec["depends_on"].items() if v["condition"] == "service_healthy"} == {
        "postgres", "qdrant-1", "qdrant-2", "qdrant-3"}
    volumes = spec["volumes"]
    data = next(v for v in volumes if v.endswith(":/data"))
    assert data.split(":")[0] in compose["volumes"]
    photos = next(v for v in volumes if ":/photos" in v)
    assert _expand(photos).split(":")[1] == "/photos" and photos.endswith(":ro")
    assert settings.allowed_roots == [Path("/photos")]


def test_cluster_services_share_photos_and_models(compose):
    """The catalogue records paths, and the worker that trains writes the models the app reads: every imgsearch
    service of the cluster mounts the same photos at the same path and the same data volume."""
    mounts = {tuple(sorted(compose["services"][s]["volumes"])) for s in IMGSEARCH_CLUSTER}
    assert len(mounts) == 1


def test_cluster_workers_scale_and_the_app_and_mirror_run(compose):
    services = compose["services"]
    worker = services["cluster-worker"]
    assert worker["command"][:2] == ["imgsearch", "worker"]
    assert "container_name" not in worker and not worker.get("ports")  # --scale cluster-worker=N needs both
    assert worker["stop_signal"] == "SIGTERM"
    app = services["cluster-app"]
    assert app["command"][:2] == ["imgsearch", "app"] and "8501:8501" in app["ports"]
    assert services["cluster-mirror"]["command"][:3] == ["imgsearch", "mirror", "sync"]
    assert "8501:8501" in services["app"]["ports"]  # the two stacks are alternatives: never started together


def test_cluster_commands_exist():
    from typer.main import get_command

    from imgsearch.ui.cli import app

    commands = get_command(app).commands
    assert {"worker", "app", "mirror", "backup", "restore"} <= set(commands)
    assert "sync" in commands["mirror"].commands


def test_app_image_can_dump_the_cluster_catalogue(compose):
    """`imgsearch backup` runs pg_dump, which refuses a server of a newer major version than its own."""
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text and "postgresql-client" in text
    oldest_debian_client = 15  # bookworm; trixie has 17
    assert int(compose["services"]["postgres"]["image"].split(":")[1].split(".")[0]) <= oldest_debian_client
