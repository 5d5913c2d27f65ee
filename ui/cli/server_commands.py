"""`imgsearch serve` (the HTTP API, ui/api/) and `imgsearch app` (the Streamlit app, ui/web/): the CLI
launches the other two front ends."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from imgsearch.ui.cli.common import DataDirOpt, fail, load_settings


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free one).")] = 8000,
    data_dir: DataDirOpt = None,
) -> None:
    """The HTTP API for other programs (FastAPI under uvicorn): /v1/..., OpenAPI at /openapi.json, docs at /docs."""
    import uvicorn

    from imgsearch.ingest.heartbeat import Heartbeat
    from imgsearch.ui.api.app import create_app

    settings = load_settings(data_dir=data_dir)
    if not _loopback(host) and not settings.api_key:
        fail(f"listening on {host} would open the API to other machines without a key: set IMGSEARCH_API_KEY "
              "(clients send it in the X-API-Key header), or listen on 127.0.0.1")
    with Heartbeat(settings.data_dir, "serve").alive():  # restore --force refuses while it runs
        uvicorn.run(create_app(settings, api_key=settings.api_key), host=host, port=port, log_level="info")


# Streamlit flags for serving, not developing, the app.
SERVER_FLAGS = (
    "--client.toolbarMode", "minimal",  # no "Deploy" button or developer menu in a self-hosted app
    # Streamlit runs a full gc.collect(2) after every script run. With torch, scikit-learn and plotly loaded that
    # took ~0.4 s of each rerun here (py-spy), holding the GIL while the page's messages waited to be sent: most of
    # a page switch. Python's own generational collector still runs.
    "--runner.postScriptGC", "false",
    # Nobody edits the installed app's source while it serves: no thread polling every module file for changes.
    "--server.fileWatcherType", "none",
    # The pages have no bare expressions to st.write, so each run skips re-parsing its page for them (~10 ms).
    "--runner.magicEnabled", "false",
)


def app_cmd(
    port: Annotated[int, typer.Option("--port")] = 8501,
    address: Annotated[str, typer.Option("--address", help="Interface to listen on.")] = "127.0.0.1",
    data_dir: DataDirOpt = None,
) -> None:
    """Start the Streamlit app."""
    env = dict(os.environ)
    if data_dir is not None:
        env["IMGSEARCH_DATA_DIR"] = str(data_dir.expanduser().resolve())
    script = Path(__file__).resolve().parents[1] / "web" / "app.py"
    # Streamlit's own command line, run by a launcher that starts the app's imports beside the server.
    cmd = [sys.executable, "-m", "imgsearch.ui.web.launch", "run", str(script), "--server.port", str(port),
           "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
           *SERVER_FLAGS]
    # exec, not a child process: a SIGTERM (docker stop, a test harness) must reach the server itself.
    os.execve(sys.executable, cmd, env)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("app")(app_cmd)
