"""`auto` is resolved once per data dir and recorded: later starts load that backbone without trying another."""

from __future__ import annotations

import json

import pytest

from imgsearch.db import repository as repo
from imgsearch.ui.services import backbone_choice
from imgsearch.ui.services.context import Context, open_database
from imgsearch.ui.services.settings import Settings


@pytest.fixture
def build_calls(monkeypatch, backbone):
    """The names Context asks load_backbone for; each builds the `tiny` backbone (as if `auto` resolved to it)."""
    calls: list[str] = []

    def fake_load(name="auto", resnet50_weights=None, device="cpu", allow_download=True):
        calls.append(name)
        return backbone

    monkeypatch.setattr("imgsearch.ui.services.context.load_backbone", fake_load)
    return calls


def test_auto_is_resolved_once_and_recorded(tmp_path, build_calls, backbone):
    settings = Settings(data_dir=tmp_path / "data", backbone="auto", num_workers=0, runtime="torch")
    Context(settings).backbone  # noqa: B018
    assert build_calls == ["auto"]
    record = json.loads((tmp_path / "data" / backbone_choice.RECORD).read_text())
    assert record["name"] == backbone.name and "first use" in record["reason"]
    Context(settings).backbone  # noqa: B018 - a restart
    assert build_calls == ["auto", backbone.name]  # the recorded name: no second resolution of auto


def test_a_data_dir_with_runs_keeps_its_backbone(tmp_path, build_calls, backbone):
    settings = Settings(data_dir=tmp_path / "data", backbone="auto", num_workers=0, runtime="torch")
    Session = open_database(settings)
    with Session.begin() as s:
        run = repo.start_run(s, "train", "efficientnet_lite0", 1280, "ab" * 32)
        repo.finish_run(s, run, "ok")
    assert backbone_choice.chosen_name("auto", settings.data_dir, Session) == ("efficientnet_lite0", False)
    assert backbone_choice.recorded(settings.data_dir)["name"] == "efficientnet_lite0"
    # An explicit setting is always obeyed, and does not change the record.
    assert backbone_choice.chosen_name("tiny", settings.data_dir, Session) == ("tiny", False)
    assert backbone_choice.recorded(settings.data_dir)["name"] == "efficientnet_lite0"


def test_a_damaged_or_unknown_record_is_ignored(tmp_path):
    (tmp_path / backbone_choice.RECORD).write_text("{not json")
    assert backbone_choice.recorded(tmp_path) is None
    (tmp_path / backbone_choice.RECORD).write_text(json.dumps({"name": "vgg99"}))
    assert backbone_choice.recorded(tmp_path) is None


def test_an_unreadable_catalogue_resolves_auto_without_recording(tmp_path):
    def broken():
        raise RuntimeError("database disk image is malformed")

    assert backbone_choice.chosen_name("auto", tmp_path, broken) == (None, False)
    assert not (tmp_path / backbone_choice.RECORD).exists()
