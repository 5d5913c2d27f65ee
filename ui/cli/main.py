"""The `imgsearch` command: the app with every command group registered, and `run`, the console entry point, which
turns known failures (ui/services/errors.py, as the API maps them) into one clear line and exit code 2."""

from __future__ import annotations

import sys

from imgsearch.ui.cli import (
    backup_commands,
    curation_commands,
    export_commands,
    ingest_commands,
    job_commands,
    mirror_commands,
    search_commands,
    server_commands,
    store_commands,
    teach_commands,
    worker_commands,
)
from imgsearch.ui.cli.common import console, make_app, say_interrupted
from imgsearch.ui.services.errors import as_app_error

# In the order `imgsearch --help` lists the commands.
GROUPS = (ingest_commands, search_commands, store_commands, worker_commands, server_commands, backup_commands,
          curation_commands, teach_commands, export_commands, job_commands, mirror_commands)

app = make_app()
for group in GROUPS:
    group.register(app)


def run() -> None:
    """Console entry point: known failures become one clear line and exit code 2, never a stack trace."""
    try:
        app()
    except KeyboardInterrupt as exc:  # outside a command (commands report it themselves: see resumable)
        say_interrupted(exc)
        sys.exit(130)
    except Exception as exc:
        known = as_app_error(exc, local=True)
        if known is None:
            raise
        console.print(f"[bold red]error:[/] {known.text()}", highlight=False, soft_wrap=True)
        sys.exit(2)
