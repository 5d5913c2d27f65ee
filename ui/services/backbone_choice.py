"""Which backbone `auto` means for one data dir: decided once, recorded in the data dir, then always the same.

Resolving `auto` anew on every start tried a ResNet-50 download each time (seconds of network timeouts on a
machine without internet), and would silently switch a collection built with EfficientNet-Lite2 to ResNet-50 the
day its weights became loadable, leaving the app on an empty store. So the first resolution is written to
`<data dir>/backbone.json`; a data dir that already has runs takes the backbone its newest finished run used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from imgsearch.db import repository as repo
from imgsearch.models.backbones import AUTO, REGISTRY
from imgsearch.models.files import atomic_write
from imgsearch.models.onnx_int8 import SUFFIX as INT8_SUFFIX

log = logging.getLogger(__name__)

RECORD = "backbone.json"


def recorded(data_dir: Path) -> dict | None:
    """The recorded choice ({"name", "reason", "recorded_at"}), or None when there is none (or it is unusable)."""
    path = Path(data_dir) / RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s, which cannot be read (%s); resolving the backbone again", path, exc)
        return None
    if not isinstance(record, dict) or record.get("name") not in REGISTRY:
        log.warning("ignoring %s: %r is not a known backbone", path, record)
        return None
    return record


def record(data_dir: Path, name: str, reason: str) -> None:
    data_dir = Path(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(data_dir / RECORD, json.dumps(
            {"name": name, "reason": reason, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds")},
            indent=2))
    except OSError as exc:  # a read-only data dir (doctor on a mounted copy): resolve again next time, say why
        log.warning("cannot record the backbone choice in %s (%s); `auto` will be resolved again next time",
                    data_dir / RECORD, exc)


def from_catalogue(Session: Callable[[], Session]) -> str | None:
    """The backbone of the newest finished training run, else of the newest finished ingest run (an int8 run's
    backbone, `<name>-int8`, is the network `<name>`)."""
    with Session() as s:
        for kind in ("train", "ingest"):
            run = repo.latest_run(s, kind)
            name = None if run is None or run.backbone is None else run.backbone.removesuffix(INT8_SUFFIX)
            if name in REGISTRY:
                return name
    return None


def chosen_name(setting: str, data_dir: Path, Session: Callable[[], Session]) -> tuple[str | None, bool]:
    """(the backbone to load for `setting`, whether a fresh resolution of `auto` may be recorded).

    The name is the setting itself unless `auto`; for `auto`, the data dir's recorded or catalogued choice
    (recorded now if it was only catalogued), or None when `auto` has yet to be resolved. A catalogue that cannot
    be read (doctor --repair is about to rebuild it) gives None and no record: its runs may name another backbone.
    """
    if setting != AUTO:
        return setting, False
    record_ = recorded(data_dir)
    if record_ is not None:
        return record_["name"], False
    try:
        name = from_catalogue(Session)
    except Exception as exc:  # a damaged or foreign database file: resolve for now, record nothing
        log.warning("cannot read the catalogue's runs to pick the backbone (%s); resolving auto for now", exc)
        return None, False
    if name is not None:
        record(data_dir, name, "auto: the backbone of this data dir's newest finished run")
        log.info("auto: this data dir was built with %s; recorded in %s", name, Path(data_dir) / RECORD)
    return name, name is None
