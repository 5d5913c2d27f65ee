"""The `imgsearch` command end to end on a tiny generated dataset (tiny backbone; once with EfficientNet-Lite0)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from imgsearch.db import repository as repo
from imgsearch.db.session import init_db, make_engine, session_factory
from imgsearch.ui.cli import app
from imgsearch.ui.services.settings import Settings
from tests.helpers import TEST_BACKBONE

runner = CliRunner()


def _train(data, data_dir, backbone=TEST_BACKBONE):
    return runner.invoke(
        app, ["train", "--data", str(data), "--backbone", backbone, "--k", "3", "--data-dir", str(data_dir)]
    )


# The whole job end to end, once with the real network too (its numbers are checked on real data in
# tests/ingest/test_caltech_slice.py).
@pytest.mark.parametrize("backbone", [TEST_BACKBONE, pytest.param("efficientnet_lite0", marks=pytest.mark.slow)])
def test_train_records_everything_and_rerun_hits_cache(tiny_dataset, tmp_path, backbone):
    (tiny_dataset / "sky" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    first = _train(tiny_dataset, tmp_path / "d", backbone)
    assert first.exit_code == 0, first.output
    assert "SVM (RBF)" in first.output and "Random Forest" in first.output
    assert re.search(r"18 images found, 18 new, 0 already catalogued, 18 embedded and indexed, 1 skipped", first.output)
    assert "truncated" in first.output and "broken.jpg" in first.output
    second = _train(tiny_dataset, tmp_path / "d", backbone)
    assert second.exit_code == 0, second.output
    assert "18 images found, 0 new, 18 already catalogued, 0 embedded and indexed" in second.output

    Session = session_factory(init_db_engine(tmp_path / "d"))
    with Session() as s:
        runs = repo.list_runs(s, kind="train")
        ingests = repo.list_runs(s, kind="ingest")
        # The second train found nothing changed and reused the first run's models and results.
        assert [r.outcome for r in runs] == ["ok"] and [r.outcome for r in ingests] == ["ok", "ok"]
        m = repo.run_metrics(s, runs[0].id)
        assert m["n_images"] == 18 and m["n_classes"] == 3
        assert 0.0 <= m["svm.accuracy"] <= 1.0 and "retrieval_loo.p@10" in m
        assert {r.reason for r in repo.skipped_files(s, ingests[1].id)} == {"truncated"}
        assert len(repo.run_class_metrics(s, runs[0].id, "svm")) == 3
        assert repo.run_artifact(s, runs[0].id, "confusion.svm")["labels"] == ["apples", "grass", "sky"]
    assert (tmp_path / "d" / "models").is_dir()

    listed = runner.invoke(app, ["metrics", "--data-dir", str(tmp_path / "d")])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count(backbone) >= 3


def init_db_engine(data_dir):
    engine = make_engine(Settings(data_dir=data_dir).db_url)
    init_db(engine)
    return engine


def test_train_on_missing_folder_is_a_clear_error(tmp_path):
    result = _train(tmp_path / "nowhere", tmp_path / "d")
    assert result.exit_code == 2
    assert "folder not found" in result.output and "nowhere" in result.output


@pytest.mark.slow
def test_train_with_too_few_images_for_k_is_a_clear_error(tiny_dataset, tmp_path):
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(tiny_dataset),
            "--backbone",
            TEST_BACKBONE,
            "--k",
            "50",
            "--data-dir",
            str(tmp_path / "d"),
        ],
    )
    assert result.exit_code == 2
    assert "lower --k" in result.output


@pytest.mark.slow  # four train commands, three of them fitting every model: ~5 s
def test_unchanged_rerun_reuses_results_and_force_refits(tiny_dataset, tmp_path):
    assert _train(tiny_dataset, tmp_path / "d").exit_code == 0
    again = runner.invoke(app, ["train", "--backbone", TEST_BACKBONE, "--k", "3", "--data-dir",
                                str(tmp_path / "d")])
    assert again.exit_code == 0, again.output
    assert "nothing changed since training run 2" in again.output and "SVM (RBF)" in again.output
    forced = runner.invoke(app, ["train", "--backbone", TEST_BACKBONE, "--k", "3", "--force", "--data-dir",
                                 str(tmp_path / "d")])
    assert forced.exit_code == 0 and "nothing changed" not in forced.output
    changed = runner.invoke(app, ["train", "--backbone", TEST_BACKBONE, "--k", "4", "--data-dir",
                                  str(tmp_path / "d")])
    assert changed.exit_code == 0 and "nothing changed" not in changed.output


def test_a_faiss_index_faiss_cannot_build_is_one_clear_line(tmp_path, capsys, monkeypatch):
    from tests.helpers import run_cli

    code, out = run_cli(["doctor"], tmp_path / "data", capsys, monkeypatch, IMGSEARCH_FAISS_INDEX="IVFx,SQ8")
    assert code == 2 and "IMGSEARCH_FAISS_INDEX='IVFx,SQ8' is not a FAISS index factory string" in out, out
    assert "IMGSEARCH_* settings" in out


def test_app_serves_with_streamlits_development_aids_off(tmp_path, monkeypatch):
    """`imgsearch app` execs Streamlit with its serving flags: without them each rerun paid a full gc.collect(2)
    (~0.4 s with torch loaded) and a thread polled every module file (README "Benchmarks", the app)."""
    import imgsearch.ui.cli.server_commands as cli

    seen = {}
    monkeypatch.setattr(cli.os, "execve", lambda exe, cmd, env: seen.update(cmd=cmd, env=env))
    result = runner.invoke(app, ["app", "--port", "8599", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    flags = dict(zip(seen["cmd"][::2], seen["cmd"][1::2], strict=False)) | dict(
        zip(seen["cmd"][1::2], seen["cmd"][2::2], strict=False))
    assert flags["--runner.postScriptGC"] == "false" and flags["--server.fileWatcherType"] == "none"
    assert flags["--runner.magicEnabled"] == "false" and flags["--server.port"] == "8599"
    assert seen["env"]["IMGSEARCH_DATA_DIR"] == str(tmp_path.resolve())
