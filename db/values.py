"""Values on their way into a row: checked against their column's choices, numpy made plain, NaN refused."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def check_choice(name: str, value: str | None, choices: Sequence[str], nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists: sqlite3 cannot bind them, nor json dump them."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return value.tolist()
    return value


def finite(name: str, value: float) -> float:
    value = float(value)
    # SQLite stores NaN as NULL, which would surface later as a baffling NOT NULL failure.
    if math.isnan(value):
        raise ValueError(f"{name} is NaN; record a number")
    return value
