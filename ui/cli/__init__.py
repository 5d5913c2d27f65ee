"""The `imgsearch` command line: `common` (the app factory, the console, the helpers every command uses), one
module per command group with a `register(app)`, and `main`, which registers them all and holds the entry point."""

from __future__ import annotations

from imgsearch.ui.cli.main import app, run

__all__ = ["app", "run"]
