"""Bad configuration and arguments: one line naming the setting, what is wrong and an example; no traceback."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from imgsearch.ui.services.settings import Settings
from tests.helpers import run_cli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BAD_ENV = [
    ("IMGSEARCH_QDRANT_URL", "notaurl"),
    ("IMGSEARCH_DATABASE_URL", "notaurl"),
    ("IMGSEARCH_DATABASE_URL", "mysql://u:p@localhost/db"),
    ("IMGSEARCH_DATABASE_URL", "postgresql+psycopg://u:p@[::1/db"),
    ("IMGSEARCH_ALLOWED_ROOTS", "notjson"),
    ("IMGSEARCH_API_KEY", "clé-secrète"),
]


@pytest.mark.parametrize(("name", "value"), BAD_ENV)
def test_a_bad_setting_is_one_line_naming_it(name, value, monkeypatch):
    from imgsearch.ui.services.settings import settings_problem

    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as err:
        Settings()
    line = settings_problem(err.value)
    assert "\n" not in line and name in line and "e.g." in line, line
    if name == "IMGSEARCH_API_KEY":
        assert value not in line  # a secret is never echoed
    if name == "IMGSEARCH_DATABASE_URL" and "u:p@" in value:
        assert ":p@" not in line  # nor a password


@pytest.mark.parametrize(("name", "value"), [*BAD_ENV, ("IMGSEARCH_QDRANT_URL", "closed")])
def test_a_bad_setting_stops_the_cli_with_exit_2(name, value, tmp_path, capsys, monkeypatch):
    if value == "closed":
        value = f"http://127.0.0.1:{_closed_port()}"
    command = ["search", str(tmp_path / "q.jpg")] if name == "IMGSEARCH_QDRANT_URL" else ["metrics"]
    code, out = run_cli(command, tmp_path / "data", capsys, monkeypatch, **{name: value})
    assert code == 2, out
    assert name in out and "Traceback" not in out and "validation error" not in out, out
    if value.startswith("http://127.0.0.1"):
        assert "cannot be reached" in out, out


def test_a_sqlite_url_in_a_missing_folder_is_refused_not_created(tmp_path, capsys, monkeypatch):
    from imgsearch.ui.services.settings import settings_problem

    missing = tmp_path / "nowhere" / "sub"
    with pytest.raises(ValidationError) as err:
        Settings(database_url=f"sqlite:///{missing}/imgsearch.db")
    assert str(missing) in settings_problem(err.value) and "does not exist" in settings_problem(err.value)
    code, out = run_cli(["metrics"], tmp_path / "data", capsys, monkeypatch,
                        IMGSEARCH_DATABASE_URL=f"sqlite:///{missing}/imgsearch.db")
    assert code == 2 and "IMGSEARCH_DATABASE_URL" in out, out
    assert not (tmp_path / "nowhere").exists()


def test_good_urls_are_accepted(tmp_path):
    assert Settings(qdrant_url="http://localhost:6333").qdrant_url == "http://localhost:6333"
    assert Settings(qdrant_url="https://qdrant.example.com").qdrant_url
    assert Settings(qdrant_url=":memory:").qdrant_url == ":memory:"
    assert Settings(database_url=f"sqlite:///{tmp_path}/x.db").database_url
    assert Settings(database_url="postgresql+psycopg://u:p@[::1]:5432/db").database_url
    assert Settings(allowed_roots=[tmp_path]).allowed_roots == [tmp_path]
    assert Settings(api_key="s3cr3t-key_ASCII.only").api_key
    assert Settings(api_key="").api_key is None  # docker compose passes an unset key as ""


def test_allowed_roots_from_the_environment_is_a_json_list(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_ALLOWED_ROOTS", f'["{tmp_path}"]')
    assert Settings().allowed_roots == [tmp_path]


def test_serve_on_an_impossible_port_is_a_usage_error(tmp_path, capsys, monkeypatch):
    code, out = run_cli(["serve", "--port", "99999"], tmp_path / "data", capsys, monkeypatch)
    assert code == 2 and "--port" in out and "Traceback" not in out, out
