"""Long id lists go to SQL in chunks: SQLite caps the bound parameters of one statement (999 before 3.32),
PostgreSQL at 65,535; 500 keeps every statement small on both."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

CHUNK = 500


def chunks(values: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """`values` in lists of at most `size`, in order; nothing for an empty input."""
    items = list(values)
    for start in range(0, len(items), size):
        yield items[start : start + size]
