"""`imgsearch serve` in a child process on a free 127.0.0.1 port: for the real-server test and the API benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests import databases
from tests.helpers import wait_until


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiServer:
    """Started by `with ApiServer(data_dir, env) as server:`; `server.url` is its base URL."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, timeout_s: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(data_dir)
        self.env = {**os.environ, **databases.database_env(self.data_dir), **(env or {})}
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen | None = None
        self.log = b""

    def __enter__(self) -> ApiServer:
        script = Path(sys.executable).with_name("imgsearch")
        cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "imgsearch.ui.cli"]
        self.proc = subprocess.Popen([*cmd, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                                     env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"imgsearch serve exited with {self.proc.returncode}:\n{self.stop()}")
            try:
                return httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(healthy, self.timeout_s, 0.2)
        except AssertionError:
            raise RuntimeError(f"imgsearch serve did not answer within {self.timeout_s} s:\n{self.stop()}") from None
        return self

    def stop(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # uvicorn shuts down cleanly on SIGTERM
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.log = self.proc.stdout.read()
        return self.log.decode(errors="replace")

    def __exit__(self, *exc) -> None:
        self.stop()
