"""What every front end reads of a filter field: its condition name, and a lower bound's range."""

from __future__ import annotations

import dataclasses

import pytest

from imgsearch.search.payload import FILTER_FIELDS
from imgsearch.ui.services.filter_fields import bounds, condition_name


def test_every_filter_field_has_what_the_front_ends_read():
    assert len({condition_name(f) for f in FILTER_FIELDS}) == len(FILTER_FIELDS)
    for f in FILTER_FIELDS:
        if f.match == "min":
            low, high = bounds(f)
            assert low < high


def test_a_filter_field_without_them_is_named_in_the_error():
    field = next(f for f in FILTER_FIELDS if f.match == "min")
    with pytest.raises(ValueError, match=f"{field.key!r} filters but has no condition name"):
        condition_name(dataclasses.replace(field, name=None))
    with pytest.raises(ValueError, match=f"{field.key!r} filters by a lower bound but has no range"):
        bounds(dataclasses.replace(field, bounds=None))
