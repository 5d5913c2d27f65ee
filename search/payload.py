"""The payload schema: the one definition of what each vector's payload holds and how each field filters.

Everything that names a payload field is built from `FIELDS`: `payload_for` (catalogue row -> payload), `Filter`
and its reference `matches` (FAISS), the Qdrant payload indexes and filter conditions, the CLI's filter options,
the app's filter widgets and `db.collection.filter_choices`. Adding a filterable field is one `PayloadField`
here (plus its catalogue column if the catalogue does not have it yet). Stdlib only: the CLI imports it at start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

FieldType = Literal["keyword", "integer", "float", "datetime"]
Match = Literal["any", "min"]

# How a condition value is stored, so every backend compares the same JSON values.
_PYTHON = {"keyword": str, "integer": int, "float": float, "datetime": str}


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
    def python_type(self) -> type:
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
)
BY_KEY: dict[str, PayloadField] = {f.key: f for f in FIELDS}
FILTER_FIELDS: tuple[PayloadField, ...] = tuple(f for f in FIELDS if f.match is not None)
_BY_NAME: dict[str, PayloadField] = {f.name: f for f in FILTER_FIELDS if f.name}


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
    """

    __slots__ = ("_conditions",)

    def __init__(self, **conditions: Any):
        unknown = [n for n in conditions if n not in _BY_NAME]
        if unknown:
            raise TypeError(f"Filter has no condition {unknown[0]!r}; it has {', '.join(_BY_NAME)}")
        self._conditions = _typed_conditions({_BY_NAME[n].key: v for n, v in conditions.items()})

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
        """(field, accepted values as a list | bound) per condition, in schema order."""
        for key, value in self._conditions.items():
            yield BY_KEY[key], list(value) if isinstance(value, tuple) else value

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
        return True

    def describe(self) -> list[str]:
        """One human-readable line per condition: "label is one of: cat, dog", "prediction confidence ≥ 80%"."""
        out = []
        for f, value in self.conditions():
            if f.match == "any":
                shown = ", ".join(str(v) for v in value) if value else "(nothing selected)"
                out.append(f"{f.noun} is one of: {shown}")
            elif f.bounds == (0.0, 1.0):
                out.append(f"{f.noun} ≥ {value:.0%}")
            else:
                out.append(f"{f.noun} ≥ {value:g}")
        return out

    def __getattr__(self, name: str) -> Any:
        """`flt.labels`, `flt.min_confidence`...: a condition by its schema name; None when not set."""
        field = _BY_NAME.get(name) if not name.startswith("_") else None
        if field is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = self._conditions.get(field.key)
        return list(value) if isinstance(value, tuple) else value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and self._conditions == other._conditions

    def __hash__(self) -> int:
        return hash(tuple(self._conditions.items()))

    def __repr__(self) -> str:
        args = ", ".join(f"{f.name}={v!r}" for f, v in self.conditions())
        return f"Filter({args})"


def _typed_conditions(by_key: Mapping[str, Any]) -> dict[str, tuple | float | int]:
    """Drop None, store values typed as the payload holds them, and keep the schema's order."""
    out: dict[str, tuple | float | int] = {}
    for f in FILTER_FIELDS:
        value = by_key.get(f.key)
        if value is None:
            continue
        if f.match == "any":
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise TypeError(f"condition on {f.key!r} takes a list of values, got {value!r}")
            out[f.key] = tuple(f.typed(v) for v in value)
        else:
            out[f.key] = f.typed(value)
    return out
