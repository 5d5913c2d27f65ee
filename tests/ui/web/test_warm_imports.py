"""`imgsearch app` starts the app's heavy imports beside Streamlit's server (ui/web/warm_imports.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imgsearch.ui.cli import server_commands


@pytest.mark.slow  # a fresh interpreter importing the app's modules: seconds
def test_the_warm_thread_imports_every_listed_module_without_torch():
    code = ("import sys; from imgsearch.ui.web import warm_imports as w; w.start(); w.join(); "
            "missing = [m for m in w.MODULES if m not in sys.modules]; "
            "print(missing, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["[]", "False"], out.stderr[-2000:]  # torch stays for the jobs that need it


def test_the_app_command_runs_streamlit_through_the_launcher(monkeypatch):
    seen = {}
    monkeypatch.setattr(server_commands.os, "execve", lambda exe, cmd, env: seen.update(cmd=cmd))
    server_commands.app_cmd(port=8599, address="127.0.0.1", data_dir=None)
    assert seen["cmd"][1:5] == ["-m", "imgsearch.ui.web.launch", "run", seen["cmd"][4]]
    assert seen["cmd"][4].endswith("app.py") and "--runner.postScriptGC" in seen["cmd"]
