"""docker-compose.yml and the Dockerfile agree with the code: the settings object, the CLI, the packages (no Docker
engine needed). What the YAML merely says (images, health checks, which service is in which profile) is not
restated here: only what breaks when the code and the deployment drift apart."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from imgsearch.ui.services.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SINGLE_NODE = ("worker", "app", "api")
IMGSEARCH_CLUSTER = ("cluster-worker", "cluster-app", "cluster-mirror")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _expand(value: str) -> str:
    """A compose value with its ${VAR:-default} interpolations replaced by their defaults."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _settings(env: dict[str, str], monkeypatch) -> Settings:
    """The settings a service's container gets: every variable must be a Settings field, and parse."""
    fields = set(Settings.model_fields)
    for key, value in env.items():
        assert key.startswith("IMGSEARCH_") and key.removeprefix("IMGSEARCH_").lower() in fields, key
        monkeypatch.setenv(key, _expand(value))
    return Settings()


def _parse_command(args: list[str]) -> dict:
    """The parameters the real CLI parses from `imgsearch ARGS` (a typo in a command or option raises)."""
    from typer.main import get_command

    from imgsearch.ui.cli import app

    assert args[0] == "imgsearch", args
    cmd, rest, path = get_command(app), list(args[1:]), []
    while hasattr(cmd, "commands"):  # a command group (`mirror sync`)
        assert rest and rest[0] in cmd.commands, f"imgsearch {' '.join(path + rest[:1])} is not a command"
        path.append(rest.pop(0))
        cmd = cmd.commands[path[-1]]
    return cmd.make_context(" ".join(path), rest).params


def test_every_imgsearch_command_parses_and_publishes_its_port(compose):
    seen = set()
    for name, service in compose["services"].items():
        if service.get("command", [""])[0] != "imgsearch":
            continue
        seen.add(name)
        params = _parse_command(service["command"])
        published = {int(p.split(":")[-1]) for p in service.get("ports", [])}
        if "port" in params:  # app and serve: the port they listen on is the one compose publishes
            assert published == {params["port"]}, (name, published, params["port"])
        else:
            assert not published, name
    assert seen == {*SINGLE_NODE, *IMGSEARCH_CLUSTER}


def test_the_worker_scales(compose):
    worker = compose["services"]["cluster-worker"]
    assert "container_name" not in worker and not worker.get("ports")  # --scale cluster-worker=N needs both


@pytest.mark.parametrize("service", SINGLE_NODE)
def test_environment_maps_onto_settings(compose, service, monkeypatch):
    spec = compose["services"][service]
    settings = _settings(spec["environment"], monkeypatch)
    url = urlparse(settings.qdrant_url)
    assert url.hostname in compose["services"] and url.port == 6333  # a compose service's REST port
    assert settings.data_dir == Path("/data")
    data_volume = next(v for v in spec["volumes"] if v.endswith(f":{settings.data_dir}"))
    assert data_volume.split(":")[0] in compose["volumes"]
    photos = [_expand(v) for v in spec["volumes"] if v.endswith(":ro")]  # the app and worker only read photos
    assert [Path(v.split(":")[1]) for v in photos] == settings.allowed_roots


@pytest.mark.parametrize("service", IMGSEARCH_CLUSTER)
def test_cluster_service_settings_and_mounts(compose, service, monkeypatch):
    spec = compose["services"][service]
    settings = _settings(spec["environment"], monkeypatch)
    url = urlparse(settings.qdrant_url)
    assert url.hostname in {"qdrant-1", "qdrant-2", "qdrant-3"} and url.port == 6333
    db = urlparse(settings.db_url)
    pg = compose["services"]["postgres"]["environment"]
    assert db.scheme == "postgresql+psycopg" and db.hostname == "postgres" and db.port == 5432
    assert (db.username, db.password, db.path.lstrip("/")) == (
        pg["POSTGRES_USER"], _expand(pg["POSTGRES_PASSWORD"]), pg["POSTGRES_DB"])
    config = settings.qdrant_collection  # a valid collection layout for 3 nodes
    assert config.shard_number == 3 and config.replication_factor == 2 and config.write_consistency_factor == 2
    # Every service that opens the stores waits for the whole cluster and the catalogue.
    assert {k for k, v in spec["depends_on"].items() if v["condition"] == "service_healthy"} == {
        "postgres", "qdrant-1", "qdrant-2", "qdrant-3"}
    photos = [_expand(v) for v in spec["volumes"] if v.endswith(":ro")]
    assert [Path(v.split(":")[1]) for v in photos] == settings.allowed_roots


def test_cluster_services_share_photos_and_models(compose):
    """The catalogue records paths, and the worker that trains writes the models the app reads: every imgsearch
    service of the cluster mounts the same photos at the same path and the same data volume."""
    mounts = {tuple(sorted(compose["services"][s]["volumes"])) for s in IMGSEARCH_CLUSTER}
    assert len(mounts) == 1


def test_dockerfile_installs_every_package():
    text = (ROOT / "Dockerfile").read_text()
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for folder in package_dirs.values():
        assert f"COPY {folder} {folder}" in text
    assert "pip install ." in text


def test_app_image_can_dump_the_cluster_catalogue(compose):
    """`imgsearch backup` runs pg_dump, which refuses a server of a newer major version than its own."""
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text and "postgresql-client" in text
    oldest_debian_client = 15  # bookworm; trixie has 17
    assert int(compose["services"]["postgres"]["image"].split(":")[1].split(".")[0]) <= oldest_debian_client
