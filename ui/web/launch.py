"""`imgsearch app`'s process: Streamlit's command line, with the app's heavy imports started first in a thread
(warm_imports), so they run while the server starts and the browser loads the page."""

from __future__ import annotations

import sys

from imgsearch.ui.web import warm_imports


def _option(name: str, default: str) -> str:
    args = sys.argv[1:]
    return args[args.index(name) + 1] if name in args[:-1] else default


def main() -> None:
    # The imports start once the server listens: begun at once, they slowed its start by about as much as
    # they saved (docs/benchmarks.md).
    warm_imports.start(_option("--server.address", "127.0.0.1"), int(_option("--server.port", "8501")))
    from streamlit.web import cli

    sys.exit(cli.main(prog_name="streamlit"))


if __name__ == "__main__":
    main()
