"""The HTTP API (FastAPI, versioned under /v1) on the same services as the CLI and the Streamlit app."""

from __future__ import annotations

from imgsearch.ui.api.app import create_app

__all__ = ["create_app"]
