"""The `imgsearch` command: the app with every command group registered, and `run`, the console entry point, which
turns known failures (ui/services/errors.py, as the API maps them) into one clear line and exit code 2."""

from __future__ import annotations

import importlib
import sys

from imgsearch.ui.cli.common import console, make_app, say_interrupted
from imgsearch.ui.services.errors import as_app_error

# The command groups, modules of this package with a `register(app)`, in the order `imgsearch --help` lists them.
# A new group is its module plus its name here.
GROUPS = ("ingest_commands", "search_commands", "store_commands", "removed_commands", "worker_commands",
          "server_commands", "backup_commands", "curation_commands", "teach_commands", "export_commands",
          "job_commands", "mirror_commands")

app = make_app()
for group in GROUPS:
    importlib.import_module(f"{__package__}.{group}").register(app)


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
