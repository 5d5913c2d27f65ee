"""The payload schema's filter fields (search/payload.py's FILTER_FIELDS) as every front end reads them: the CLI's
options, the API's query parameters and the app's widgets are named by a field's condition name, and a "min"
field's slider or bounds span its range. PayloadField declares both optional (fields that do not filter have
neither); these say so clearly if a filter field ever lacks one."""

from __future__ import annotations

from imgsearch.search.payload import PayloadField


def condition_name(f: PayloadField) -> str:
    """The field's condition name: its Filter keyword ("label", "min_confidence")."""
    if f.name is None:
        raise ValueError(f"payload field {f.key!r} filters but has no condition name")
    return f.name


def bounds(f: PayloadField) -> tuple[float, float]:
    """A "min" field's range: (no condition, the highest bound)."""
    if f.bounds is None:
        raise ValueError(f"payload field {f.key!r} filters by a lower bound but has no range")
    return f.bounds
