"""Running the `imgsearch` command in this process, as a person would type it."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.helpers.stores import TEST_BACKBONE


def run_cli(args: list[str], data_dir: Path, capsys, monkeypatch, **env: str) -> tuple[int, str]:
    """`imgsearch ARGS --data-dir DATA_DIR` through the console entry point, `run`, which turns known errors
    into one line and exit code 2 (typer's CliRunner invokes the app without it). Returns (exit code, output
    with whitespace collapsed). A stack trace fails the calling test: the exception is raised here."""
    from imgsearch.ui.cli import run

    monkeypatch.setattr(sys, "argv", ["imgsearch", *args, "--data-dir", str(data_dir)])
    for name, value in {"IMGSEARCH_BACKBONE": TEST_BACKBONE, "IMGSEARCH_NUM_WORKERS": "0", **env}.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = 0
    try:
        run()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return int(code), " ".join((out.out + out.err).split())
