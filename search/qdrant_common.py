"""What both Qdrant backends (Edge, server) share: payload indexes and filter conditions read from the payload
schema, and grouped payload updates. Each backend turns these plain tuples into its own binding's objects."""

from __future__ import annotations

import json
from typing import Any, Literal

from imgsearch.search.payload import CONDITION_FIELDS, FieldType, Filter

SCROLL_PAGE = 10_000

# "present": whether a field is set at all (Filter(has_location=...)), True or False.
Condition = tuple[str, Literal["any", "min", "range", "near", "present"], Any]


def indexed_fields() -> list[tuple[str, FieldType]]:
    """(payload key, value type) of every field a filter can read: each gets a Qdrant payload index."""
    return [(f.key, f.type) for f in CONDITION_FIELDS]


def filter_conditions(flt: Filter | None) -> list[Condition] | None:
    """(key, "any", accepted values) / (key, "min", lower bound) / (key, "range", (low, high)) / (key, "near",
    Near) / (key, "present", bool) per condition, ANDed; None = no filter."""
    if flt is None or flt.is_empty():
        return None
    out: list[Condition] = []
    for f, value in flt.conditions():
        if f.match == "any":  # keyword or integer fields (the schema's tests hold it to that)
            value = [int(v) for v in value] if f.type == "integer" else [str(v) for v in value]
        how = "present" if f.match == "near" and isinstance(value, bool) else f.match
        out.append((f.key, how, value))  # type: ignore[arg-type]
    return out


def grouped_updates(ids: list[int], updates: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[int]]]:
    """Group ids that get the same update, so a re-fit (few distinct clusters) is a few operations."""
    groups: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for i, u in zip(ids, updates, strict=True):
        groups.setdefault(json.dumps(u, sort_keys=True), (u, []))[1].append(i)
    return list(groups.values())
