"""The front ends' parameters for the "range" and "near" payload fields (search/payload.py): the CLI's options
and the API's query parameters (`CONDITION_PARAMS`), and the `Filter` keywords they give
(`conditions_from_params`). Stdlib only, like the schema: the CLI imports it at start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from imgsearch.search.payload import CONDITION_FIELDS, Near

DEFAULT_RADIUS_KM = 10.0


@dataclass(frozen=True)
class ConditionParam:
    """One parameter a front end offers for a "range" or "near" field: CLI `--<flag>`, API query parameter `name`.
    kind "date": a day, YYYY-MM-DD; "point": "LAT,LON" or "LAT,LON,RADIUSkm"; "km": a radius; "bool": yes/no."""

    name: str
    flag: str
    kind: Literal["date", "point", "km", "bool"]
    help: str


def _condition_params() -> tuple[ConditionParam, ...]:
    out: list[ConditionParam] = []
    for f in CONDITION_FIELDS:
        if f.name is None or f.flag is None:  # every "range" and "near" field has both
            continue
        if f.match == "range":
            out += [ConditionParam(f"{f.name}_after", f"{f.flag}-after", "date",
                                   f"Only images whose {f.noun} is on or after this day (YYYY-MM-DD)."),
                    ConditionParam(f"{f.name}_before", f"{f.flag}-before", "date",
                                   f"Only images whose {f.noun} is on or before this day (YYYY-MM-DD).")]
        elif f.match == "near":
            out += [ConditionParam(f.name, f.flag, "point",
                                   f"Only images whose {f.noun} is near this point: LAT,LON (decimal degrees), or "
                                   f"LAT,LON,RADIUSkm."),
                    ConditionParam("radius_km", "radius-km", "km",
                                   f"The radius for --{f.flag}, in km (default {DEFAULT_RADIUS_KM:g})."),
                    ConditionParam(f"has_{f.key}", f"has-{f.key}", "bool",
                                   f"Only images with a {f.noun} (GPS position), or only those without.")]
    return tuple(out)


CONDITION_PARAMS: tuple[ConditionParam, ...] = _condition_params()


def parse_point(text: str) -> tuple[float, float, float | None]:
    """ "38.72,-9.14" -> (38.72, -9.14, None); "38.72,-9.14,25km" (or ",25") -> (38.72, -9.14, 25.0)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 3 and parts[2].lower().endswith("km"):
        parts[2] = parts[2][:-2].strip()
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (2, 3) or not all(math.isfinite(n) for n in numbers):
        raise ValueError(f"a place is LAT,LON or LAT,LON,RADIUSkm in decimal degrees (38.72,-9.14,25km); got "
                         f"{text!r}")
    lat, lon = numbers[:2]
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"latitude must be within [-90, 90] and longitude within [-180, 180]; got {text!r}")
    radius = numbers[2] if len(numbers) == 3 else None
    if radius is not None and radius <= 0:
        raise ValueError(f"the radius must be more than 0 km; got {text!r}")
    return lat, lon, radius


def conditions_from_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """Filter keywords from the CONDITION_PARAMS values a front end received (None: not given). Dates may be
    dates, datetimes or YYYY-MM-DD text. Raises ValueError, with a message for people, on a malformed value."""
    out: dict[str, Any] = {}
    radius_params = [p.name for p in CONDITION_PARAMS if p.kind == "km"]
    for p in CONDITION_PARAMS:
        value = values.get(p.name)
        if value is None or p.kind == "km":
            continue
        if p.kind == "date":
            if isinstance(value, str):
                try:
                    value = date.fromisoformat(value.strip())
                except ValueError:
                    raise ValueError(f"{p.name} is a day, YYYY-MM-DD; got {value!r}") from None
            out[p.name] = value.date() if isinstance(value, datetime) else value
        elif p.kind == "point":
            lat, lon, radius = parse_point(value)
            given = [float(values[n]) for n in radius_params if values.get(n) is not None]
            if radius is not None and given and given[0] != radius:
                raise ValueError(f"two radii for {p.name}: {radius:g} km in it and {given[0]:g} km apart")
            radius = radius if radius is not None else given[0] if given else DEFAULT_RADIUS_KM
            if radius <= 0:
                raise ValueError(f"the radius must be more than 0 km; got {radius:g}")
            out[p.name] = Near(lat, lon, radius)
        else:
            out[p.name] = bool(value)
    lone = [n for n in radius_params if values.get(n) is not None]
    if lone and not any(p.kind == "point" and values.get(p.name) is not None for p in CONDITION_PARAMS):
        raise ValueError(f"{lone[0]} needs a place to be near (near=LAT,LON)")
    for f in CONDITION_FIELDS:
        after, before = out.get(f"{f.name}_after"), out.get(f"{f.name}_before")
        if f.match == "range" and after is not None and before is not None and after > before:
            raise ValueError(f"{f.name}_after ({after}) is later than {f.name}_before ({before})")
    return out
