"""`python -m imgsearch.ui.cli ...`: the `imgsearch` command."""

from imgsearch.ui.cli.main import run

run()
