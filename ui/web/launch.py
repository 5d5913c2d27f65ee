"""`imgsearch app`'s process: Streamlit's command line, with the app's heavy imports started first in a thread
(warm_imports), so they run while the server starts and the browser loads the page."""

from __future__ import annotations

import sys

from imgsearch.ui.web import warm_imports


def main() -> None:
    warm_imports.start()
    from streamlit.web import cli

    sys.exit(cli.main(prog_name="streamlit"))


if __name__ == "__main__":
    main()
