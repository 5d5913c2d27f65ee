"""The FAISS mirror's payloads as columns that are parsed only when a payload is asked for.

A segment file keeps each payload as its own JSON text (`payload_json`, the texts one after another, and
`payload_ends`, where each ends), so opening the mirror reads the bytes and parses none of them: at 1M points,
parsing every payload was most of a reopen and its dicts much of the process's memory. A payload is parsed when a
search returns it, a filter looks at it or an update merges into it; merges and compactions copy the texts as
they are.

Three kinds of column, all indexable by row (a fresh dict each time) and with `text(row)`, the JSON bytes:
`Parsed` (payloads given as dicts: a commit's own), `Texts` (read from a segment file) and `Picked` (rows of
other columns: a merge's or a compaction's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol, cast

import numpy as np


class PayloadColumn(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, row: int) -> dict[str, Any]: ...

    def text(self, row: int) -> bytes: ...


class Parsed:
    """Payloads given as dicts (a commit's); `text` serialises one."""

    def __init__(self, payloads: Sequence[dict[str, Any]]):
        self._payloads = list(payloads)

    def __len__(self) -> int:
        return len(self._payloads)

    def __getitem__(self, row: int) -> dict[str, Any]:
        return dict(self._payloads[row])

    def text(self, row: int) -> bytes:
        return json.dumps(self._payloads[row]).encode()


class Texts:
    """`n` payloads of a segment file, rows `start` .. `start + n - 1` of its texts (`blob`, `ends`)."""

    def __init__(self, blob: np.ndarray, ends: np.ndarray, start: int, n: int):
        self._blob, self._ends, self._start, self._n = blob, ends, start, n

    def __len__(self) -> int:
        return self._n

    def text(self, row: int) -> bytes:
        if not 0 <= row < self._n:
            raise IndexError(row)
        j = self._start + row
        lo = int(self._ends[j - 1]) if j else 0
        return self._blob[lo:int(self._ends[j])].tobytes()

    def __getitem__(self, row: int) -> dict[str, Any]:
        return json.loads(self.text(row))


class Picked:
    """Rows of other columns, in the order given: (column, row) pairs."""

    def __init__(self, refs: Sequence[tuple[PayloadColumn, int]]):
        self._refs = list(refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __getitem__(self, row: int) -> dict[str, Any]:
        column, j = self._refs[row]
        return column[j]

    def text(self, row: int) -> bytes:
        column, j = self._refs[row]
        return column.text(j)


def column(payloads: PayloadColumn | Sequence[dict[str, Any]]) -> PayloadColumn:
    """A column as given, or dicts wrapped as one."""
    if isinstance(payloads, Parsed | Texts | Picked):
        return payloads
    return Parsed(cast(Sequence[dict[str, Any]], payloads))


def to_arrays(*columns: PayloadColumn) -> tuple[np.ndarray, np.ndarray]:
    """(`payload_json`, `payload_ends`) for a segment file: the texts of every row of `columns`, in order."""
    texts = [c.text(row) for c in columns for row in range(len(c))]
    ends = np.cumsum([len(t) for t in texts], dtype=np.int64) if texts else np.zeros(0, np.int64)
    return np.frombuffer(b"".join(texts), dtype=np.uint8), ends


def from_arrays(blob: np.ndarray, ends: np.ndarray, n_put: int, n_set: int) -> tuple[Texts, Texts]:
    """The put and set columns of a segment file's `payload_json` and `payload_ends`; ValueError when they do not
    fit together."""
    blob = np.asarray(blob, np.uint8).reshape(-1)
    ends = np.asarray(ends, np.int64).reshape(-1)
    if len(ends) != n_put + n_set:
        raise ValueError(f"holds {len(ends)} payloads for {n_put} puts and {n_set} sets")
    if len(ends) and (ends[-1] != len(blob) or ends[0] < 0 or np.any(np.diff(ends) < 0)):
        raise ValueError("its payload offsets do not fit its payload texts")
    return Texts(blob, ends, 0, n_put), Texts(blob, ends, n_put, n_set)
