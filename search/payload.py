"""The payload schema: the one definition of what each vector's payload holds and how each field filters.

Everything that names a payload field is built from `FIELDS`: `payload_for` (catalogue row -> payload), `Filter`
and its reference `matches` (FAISS), the Qdrant payload indexes and filter conditions, the CLI's filter options,
the app's filter widgets and `db.collection.filter_choices`. Adding a filterable field is one `PayloadField`
here (plus its catalogue column if the catalogue does not have it yet). Stdlib only: the CLI imports it at start.

Conditions come in four kinds (`PayloadField.match`): "any" and "min" (FILTER_FIELDS: the front ends draw their
options and widgets from the schema alone), "range" (the date taken: `taken_after` / `taken_before`) and "near"
(the place: `near=(lat, lon, radius_km)`, or `has_location=True/False` for whether a photo has a place at all),
which every store filters on but whose options each front end draws.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

FieldType = Literal["keyword", "integer", "float", "datetime", "geo"]
Match = Literal["any", "min", "range", "near"]

# How a condition value is stored, so every backend compares the same JSON values.
_PYTHON = {"keyword": str, "integer": int, "float": float, "datetime": str, "geo": float}
EARTH_RADIUS_KM = 6371.0  # the mean radius Qdrant's geo_radius uses too, so every backend draws the same circle
_DAY_S = 86_400


class Near(NamedTuple):
    """A "near" condition: within radius_km (great-circle distance) of (lat, lon), in decimal degrees."""

    lat: float
    lon: float
    radius_km: float


def _epoch_seconds(local: datetime) -> float:
    """A naive wall-clock time as a number that ranges compare: seconds since 1970-01-01 00:00 of that clock."""
    return local.replace(tzinfo=UTC).timestamp()


def day_start(day: date | str) -> float:
    """The first second of `day` ("2021-05-06" or a date) on the photos' own clocks, as taken_at stores it."""
    day = date.fromisoformat(day) if isinstance(day, str) else day
    if isinstance(day, datetime):
        day = day.date()
    return _epoch_seconds(datetime(day.year, day.month, day.day))


def _day(seconds: float) -> date:
    return datetime.fromtimestamp(seconds, UTC).date()


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points in decimal degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _isoformat(value: Any) -> str:
    return value.isoformat()


def _tag_terms(tags: Any) -> list[str]:
    """An image's tags (catalogue rows with `.tag`, or names) -> every term that finds it: each tag and all its
    broader WordNet terms ("Pekinese" -> ... "dog", "mammal", "animal"), sorted. Stored expanded, so a filter on
    "dog" is one indexed keyword match on every backend."""
    from imgsearch.models.tags import imagenet_vocabulary  # numpy and a JSON file: not at the CLI's start

    return imagenet_vocabulary().expand(getattr(t, "tag", t) for t in tags)


def _absolute_path(text: str) -> str:
    """Payloads hold resolved absolute folders; a person types relative or `~` paths."""
    return str(Path(text).expanduser().resolve())


@dataclass(frozen=True)
class PayloadField:
    """One payload key: its value type, the catalogue attribute it comes from, and whether and how it filters.

    match="any": a condition is a list of accepted values (keyword or integer fields).
    match="min": a condition is a lower bound, value >= bound (integer or float fields); `bounds` is its range.
    match="range": a condition is (low, high): low <= value < high, either None for no bound (float fields).
    match="near": a condition is a `Near`: the point lies within its radius (geo fields: {"lat", "lon"}); or a bool,
        `has_<key>`: whether the point has a position at all.
    match=None: stored and shown, never filtered on (and not indexed in Qdrant).
    many: the value is a list of `type` values; an "any" condition holds when one of them is accepted.
    """

    key: str
    type: FieldType
    source: str  # attribute of the catalogue row (db.models.Image)
    match: Match | None = None
    name: str | None = None  # the condition's name: Filter keyword, app widget key
    noun: str = ""  # what the app and messages call it ("K-Means cluster")
    flag: str | None = None  # CLI option name, without the dashes
    bounds: tuple[float, float] | None = None
    to_payload: Callable[[Any], Any] | None = None  # catalogue value -> stored value (None stays None)
    parse: Callable[[str], Any] | None = None  # what a person types on the command line -> stored value
    many: bool = False

    @property
    def title(self) -> str:
        """Widget label: "Label", "Minimum prediction confidence"."""
        if self.match == "min":
            return f"Minimum {self.noun}"
        return self.noun[:1].upper() + self.noun[1:]

    @property
    def python_type(self) -> builtins.type[Any]:  # `type` here is the field above
        return _PYTHON[self.type]

    def typed(self, value: Any) -> Any:
        """A condition value as the payload stores it (numpy scalars, numeric strings); None stays None."""
        return None if value is None else self.python_type(value)


FIELDS: tuple[PayloadField, ...] = (
    PayloadField("path", "keyword", "path"),
    PayloadField("file_name", "keyword", "file_name"),
    PayloadField("label", "keyword", "label", "any", "labels", "label", "label"),
    PayloadField("predicted_label", "keyword", "predicted_label", "any", "predicted_labels", "predicted label",
                 "predicted"),
    PayloadField("predicted_prob", "float", "predicted_prob", "min", "min_confidence", "prediction confidence",
                 "min-confidence", bounds=(0.0, 1.0)),
    PayloadField("kmeans_cluster", "integer", "kmeans_cluster", "any", "kmeans_clusters", "K-Means cluster",
                 "cluster"),
    PayloadField("agglo_cluster", "integer", "agglo_cluster", "any", "agglo_clusters", "agglomerative cluster",
                 "agglo"),
    PayloadField("content_hash", "keyword", "content_hash"),
    PayloadField("width", "integer", "width"),
    PayloadField("height", "integer", "height"),
    PayloadField("size_bytes", "integer", "size_bytes"),  # with the fields above: enough to rebuild a catalogue row
    PayloadField("source_folder", "keyword", "source_folder", "any", "folders", "folder", "folder",
                 parse=_absolute_path),
    PayloadField("ingest_run_id", "integer", "ingest_run_id"),
    PayloadField("model_run_id", "integer", "model_run_id"),  # the training run whose models predicted the above
    PayloadField("time", "datetime", "created_at", to_payload=_isoformat),
    # Curation (ingest/curation.py): the near-duplicate group (its smallest image id; None = no near-duplicate),
    # the cosine distance to the 10th nearest neighbour (high = unusual), and the quality flags.
    PayloadField("duplicate_group", "integer", "duplicate_group", "any", "duplicate_groups", "near-duplicate group",
                 "duplicate-group"),
    PayloadField("uniqueness", "float", "uniqueness", "min", "min_uniqueness", "uniqueness", "min-uniqueness",
                 bounds=(0.0, 1.0)),
    PayloadField("quality", "keyword", "quality", "any", "qualities", "image quality", "quality"),
    PayloadField("quality_flags", "keyword", "quality_flags"),
    # Automatic tags (models/tags.py): the image's top ImageNet classes and all their broader terms.
    PayloadField("tags", "keyword", "tags", "any", "tags", "tag", "tag", to_payload=_tag_terms, many=True),
    # Photo metadata (ingest/photo_meta.py). taken_at: when the photo was taken on its own clock (the day a person
    # files it under, wherever they were), as seconds so date ranges compare numbers; filtered by whole days with
    # Filter(taken_after=..., taken_before=...). location: the GPS position as a geo point {"lat", "lon"}.
    PayloadField("taken_at", "float", "taken_local", "range", "taken", "date taken", "taken",
                 to_payload=_epoch_seconds),
    PayloadField("camera", "keyword", "camera", "any", "cameras", "camera", "camera"),
    PayloadField("lens", "keyword", "lens"),
    PayloadField("location", "geo", "location", "near", "near", "place", "near"),
)
BY_KEY: dict[str, PayloadField] = {f.key: f for f in FIELDS}
# Every field a condition can be on: each backend filters on all of them, and each gets a Qdrant payload index.
CONDITION_FIELDS: tuple[PayloadField, ...] = tuple(f for f in FIELDS if f.match is not None)
# The "any" and "min" fields, whose options and widgets the front ends draw from the schema alone.
FILTER_FIELDS: tuple[PayloadField, ...] = tuple(f for f in CONDITION_FIELDS if f.match in ("any", "min"))
_BY_NAME: dict[str, PayloadField] = {f.name: f for f in CONDITION_FIELDS if f.name and f.match != "range"}
# A range's two ends are conditions of their own: Filter(taken_after=..., taken_before=...), inclusive days.
_RANGE_ENDS: dict[str, tuple[PayloadField, int]] = {
    f"{f.name}_{end}": (f, side) for f in CONDITION_FIELDS if f.match == "range" for side, end in
    enumerate(("after", "before"))}
# Whether a geo field is set at all: Filter(has_location=True) (False: photos without a place).
_PRESENCE: dict[str, PayloadField] = {f"has_{f.key}": f for f in CONDITION_FIELDS if f.match == "near"}


def list_filter_columns(fields: tuple[PayloadField, ...] = FILTER_FIELDS) -> dict[str, str]:
    """Payload key -> catalogue attribute, for the fields filtered by a list of values (the app offers their
    distinct values: `db.collection.filter_choices`)."""
    return {f.key: f.source for f in fields if f.match == "any"}


def payload_for(row: Any) -> dict[str, Any]:
    """What Qdrant (and the FAISS sidecar) keep for one catalogue row; the app shows and filters on these."""
    out = {}
    for f in FIELDS:
        value = getattr(row, f.source)
        out[f.key] = f.to_payload(value) if f.to_payload is not None and value is not None else value
    return out


class Filter:
    """Conditions on the filterable payload fields, ANDed; a field without a condition is not looked at.

    An "any" condition is a list of accepted values (an empty list matches nothing); a "min" condition keeps
    points whose value is >= it. A point without the field never meets a condition on it.

    Filter(labels=["cat"], min_confidence=0.8) names conditions as the schema does (`PayloadField.name`);
    Filter.on({"label": ["cat"]}) names them by payload key. None means no condition.

    Photo metadata: Filter(taken_after="2021-05-01", taken_before=date(2021, 5, 31)) keeps photos taken on those
    days, both included, on the photos' own clocks; Filter(cameras=["Apple iPhone 12"]) an exact camera;
    Filter(near=(48.86, 2.35, 10)) those within 10 km of a place (lat, lon, radius in km; a `Near`). A photo
    without a date or a position never meets such a condition. Filter.on({"taken_at": (low, high)}) takes the
    stored seconds, low <= taken_at < high.
    """

    __slots__ = ("_conditions",)

    def __init__(self, **conditions: Any):
        unknown = [n for n in conditions if n not in _BY_NAME and n not in _RANGE_ENDS and n not in _PRESENCE]
        if unknown:
            known = ", ".join([*_BY_NAME, *_RANGE_ENDS, *_PRESENCE])
            raise TypeError(f"Filter has no condition {unknown[0]!r}; it has {known}")
        by_key = {_BY_NAME[n].key: v for n, v in conditions.items() if n in _BY_NAME}
        for n, value in conditions.items():
            if n in _RANGE_ENDS and value is not None:
                f, side = _RANGE_ENDS[n]
                bounds = list(by_key.get(f.key) or (None, None))
                # A day's last second is the next day's first, excluded: "before" is inclusive of its day.
                bounds[side] = day_start(value) + side * _DAY_S
                by_key[f.key] = tuple(bounds)
        for n, value in conditions.items():
            if n in _PRESENCE and value is not None:
                f = _PRESENCE[n]
                if by_key.get(f.key) is None:
                    by_key[f.key] = bool(value)
                elif not value:  # near a place and without a place: a contradiction, not an empty result
                    raise ValueError(f"{f.name} and {n}=False contradict each other")
                # near a place implies having one
        self._conditions = _typed_conditions(by_key)

    @classmethod
    def on(cls, conditions: Mapping[str, Any]) -> Filter:
        """Filter from payload key -> accepted values (any) or bound (min)."""
        unknown = [k for k in conditions if k not in BY_KEY or BY_KEY[k].match is None]
        if unknown:
            raise KeyError(f"{unknown[0]!r} is not a filterable payload field")
        flt = cls.__new__(cls)
        flt._conditions = _typed_conditions(conditions)
        return flt

    def conditions(self) -> Iterator[tuple[PayloadField, Any]]:
        """(field, accepted values as a list | bound | (low, high) | Near) per condition, in schema order."""
        for key, value in self._conditions.items():
            f = BY_KEY[key]
            yield f, list(value) if f.match == "any" and isinstance(value, tuple) else value

    def any_of(self) -> dict[str, list[Any]]:
        """Payload key -> accepted values, for the "any" conditions that are set."""
        return {f.key: v for f, v in self.conditions() if f.match == "any"}

    def is_empty(self) -> bool:
        return not self._conditions

    def matches_nothing(self) -> bool:
        return any(len(v) == 0 for v in self.any_of().values())

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """Reference semantics, used by backends without native filtering (FAISS)."""
        for f, accepted in self.conditions():
            value = payload.get(f.key)
            if f.match == "any" and f.many:
                if not any(v in accepted for v in value or ()):
                    return False
            elif f.match == "any" and value not in accepted:
                return False
            if f.match == "min" and (value is None or not value >= accepted):
                return False
            if f.match == "range" and not _in_range(value, accepted):
                return False
            if f.match == "near" and not _is_near(value, accepted):
                return False
        return True

    def describe(self) -> list[str]:
        """One human-readable line per condition: "label is one of: cat, dog", "prediction confidence ≥ 80%"."""
        out = []
        for f, value in self.conditions():
            if f.match == "any":
                shown = ", ".join(str(v) for v in value) if value else "(nothing selected)"
                out.append(f"{f.noun} is one of: {shown}")
            elif f.match == "range":
                low, high = value
                days = [None if low is None else _day(low), None if high is None else _day(high - _DAY_S)]
                shown = (f"from {days[0]} to {days[1]}" if None not in days else
                         f"on or after {days[0]}" if days[0] is not None else f"on or before {days[1]}")
                out.append(f"{f.noun} {shown}")
            elif f.match == "near" and isinstance(value, bool):
                out.append(f"has a {f.noun}" if value else f"has no {f.noun}")
            elif f.match == "near":
                out.append(f"{f.noun} within {value.radius_km:g} km of {value.lat:.5g}, {value.lon:.5g}")
            elif f.bounds == (0.0, 1.0):
                out.append(f"{f.noun} ≥ {value:.0%}")
            else:
                out.append(f"{f.noun} ≥ {value:g}")
        return out

    def __getattr__(self, name: str) -> Any:
        """`flt.labels`, `flt.min_confidence`, `flt.taken_after` (a date)...: a condition by its schema name; None
        when not set."""
        if not name.startswith("_") and name in _RANGE_ENDS:
            f, side = _RANGE_ENDS[name]
            bounds = self._conditions.get(f.key)
            bound = bounds[side] if isinstance(bounds, tuple) else None
            return None if bound is None else _day(bound - side * _DAY_S)
        if not name.startswith("_") and name in _PRESENCE:
            value = self._conditions.get(_PRESENCE[name].key)
            return None if value is None else value is not False
        field = _BY_NAME.get(name) if not name.startswith("_") else None
        if field is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = self._conditions.get(field.key)
        if field.match == "near" and isinstance(value, bool):
            return None  # has_location alone
        return list(value) if field.match == "any" and isinstance(value, tuple) else value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and self._conditions == other._conditions

    def __hash__(self) -> int:
        return hash(tuple(self._conditions.items()))

    def __repr__(self) -> str:
        args = []
        for f, v in self.conditions():
            if f.match == "range":
                args += [f"{n}={getattr(self, n)!r}" for n, (rf, _) in _RANGE_ENDS.items() if rf is f
                         and getattr(self, n) is not None]
            elif f.match == "near" and isinstance(v, bool):
                args.append(f"has_{f.key}={v!r}")
            else:
                args.append(f"{f.name}={v!r}")
        return f"Filter({', '.join(args)})"


def _in_range(value: Any, bounds: tuple[float | None, float | None]) -> bool:
    low, high = bounds
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value < high)


def _is_near(value: Any, near: Near | bool) -> bool:
    placed = isinstance(value, Mapping) and value.get("lat") is not None and value.get("lon") is not None
    if isinstance(near, bool):
        return placed is near
    if not placed:
        return False
    return haversine_km(near.lat, near.lon, value["lat"], value["lon"]) <= near.radius_km


def _typed_conditions(by_key: Mapping[str, Any]) -> dict[str, tuple | float | int | bool]:
    """Drop None, store values typed as the payload holds them, and keep the schema's order."""
    out: dict[str, tuple | float | int | bool] = {}
    for f in CONDITION_FIELDS:
        value = by_key.get(f.key)
        if value is None:
            continue
        if f.match == "range":
            low, high = value
            out[f.key] = (None if low is None else float(low), None if high is None else float(high))
        elif f.match == "near" and isinstance(value, bool):
            out[f.key] = value
        elif f.match == "near":
            near = Near(*(float(v) for v in value))
            if not (-90 <= near.lat <= 90 and -180 <= near.lon <= 180 and near.radius_km >= 0):
                raise ValueError(f"near takes (lat, lon, radius_km) with lat in [-90, 90], lon in [-180, 180] and "
                                 f"a radius >= 0, got {value!r}")
            out[f.key] = near
        elif f.match == "any":
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise TypeError(f"condition on {f.key!r} takes a list of values, got {value!r}")
            out[f.key] = tuple(f.typed(v) for v in value)
        else:
            out[f.key] = f.typed(value)
    return out
