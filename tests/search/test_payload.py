"""The payload schema is the one definition of the payload: payload_for, Filter, the Qdrant payload indexes and
the CLI's filter options are all read from it (the contract suite filters on every schema field on every backend;
tests/db/test_collection.py and the filtered-page tests cover the app's choices and widgets)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import typer
from qdrant_client import QdrantClient
from typer.testing import CliRunner

from imgsearch.models.identity import BackboneId
from imgsearch.search.condition_params import CONDITION_PARAMS, DEFAULT_RADIUS_KM
from imgsearch.search.payload import (
    BY_KEY,
    CONDITION_FIELDS,
    FIELDS,
    FILTER_FIELDS,
    Filter,
    Near,
    day_start,
    haversine_km,
    payload_for,
)
from imgsearch.search.qdrant_edge import EdgeIndex
from imgsearch.search.qdrant_edge_params import SCHEMA_TYPES
from imgsearch.search.qdrant_server import WRITTEN_KEY, QdrantClientIndex, _client_schema
from imgsearch.ui.cli import app as cli_app
from imgsearch.ui.cli.search_commands import with_filter_options

INFO = BackboneId("schemanet", 4, "ab" * 32)
runner = CliRunner()


def test_schema_is_consistent():
    assert len(BY_KEY) == len(FIELDS)
    for f in FILTER_FIELDS:
        assert f.name and f.noun and f.flag, f.key
        if f.match == "any":
            assert f.type in ("keyword", "integer"), f.key  # what Qdrant's MatchAny and the widgets handle
        else:
            assert f.match == "min" and f.type in ("integer", "float") and f.bounds is not None, f.key
    for f in CONDITION_FIELDS:
        assert f.name and f.noun and f.flag, f.key
        if f.match == "range":
            assert f.type == "float", f.key  # a number, so Qdrant's float range index serves it
        elif f.match == "near":
            assert f.type == "geo", f.key
    for attr in ("name", "flag"):
        names = [getattr(f, attr) for f in CONDITION_FIELDS]
        assert len(set(names)) == len(names), attr


def test_payload_for_reads_the_catalogue_row():
    row = SimpleNamespace(path="/p/a/x.jpg", file_name="x.jpg", label="a", predicted_label="b", predicted_prob=0.25,
                          kmeans_cluster=3, agglo_cluster=None, content_hash="f" * 64, width=4, height=3,
                          size_bytes=123, source_folder="/p/a", ingest_run_id=7, model_run_id=2,
                          created_at=datetime(2024, 5, 6, 7, 8, 9), split="train", status="indexed",
                          duplicate_group=5, uniqueness=0.25, quality="dark", quality_flags="dark,blurry",
                          tags=[SimpleNamespace(tag="Pekinese", prob=0.9)],
                          taken_local=datetime(2021, 5, 6, 7, 8, 9), camera="Apple iPhone 12", lens=None,
                          location={"lat": 48.5, "lon": -2.25})
    assert payload_for(row) == {
        "path": "/p/a/x.jpg", "file_name": "x.jpg", "label": "a", "predicted_label": "b", "predicted_prob": 0.25,
        "kmeans_cluster": 3, "agglo_cluster": None, "content_hash": "f" * 64, "width": 4, "height": 3,
        "size_bytes": 123, "source_folder": "/p/a", "ingest_run_id": 7, "model_run_id": 2,
        "time": "2024-05-06T07:08:09", "duplicate_group": 5, "uniqueness": 0.25, "quality": "dark",
        "quality_flags": "dark,blurry",
        "tags": ["Pekinese", "animal", "canine", "carnivore", "chordate", "dog", "domestic animal", "mammal",
                 "organism", "placental", "toy dog", "vertebrate"],
        "taken_at": 1620284889.0, "camera": "Apple iPhone 12", "lens": None,
        "location": {"lat": 48.5, "lon": -2.25},
    }
    assert list(payload_for(row)) == [f.key for f in FIELDS]


def test_filter_reference_semantics():
    p = {"label": "cat", "predicted_prob": 0.7, "kmeans_cluster": 3, "source_folder": "/a"}
    assert Filter().is_empty() and Filter().matches(p)
    assert Filter(labels=["cat", "dog"], kmeans_clusters=[3]).matches(p)
    assert not Filter(labels=["dog"]).matches(p)
    assert Filter(min_confidence=0.7).matches(p) and not Filter(min_confidence=0.71).matches(p)
    assert not Filter(min_confidence=0.1).matches({"label": "cat"})  # no prediction, no match
    assert not Filter(agglo_clusters=[1]).matches(p)  # missing key never matches a condition
    assert Filter(folders=[]).matches_nothing() and not Filter(folders=[]).matches(p)


def test_a_list_field_matches_when_any_of_its_values_is_accepted():
    p = {"tags": ["Pekinese", "dog", "animal"]}
    assert Filter(tags=["dog"]).matches(p) and Filter(tags=["cat", "animal"]).matches(p)
    assert not Filter(tags=["cat"]).matches(p)
    assert not Filter(tags=["dog"]).matches({"tags": []}) and not Filter(tags=["dog"]).matches({})


def test_photo_filters_reference_semantics():
    from datetime import date

    flt = Filter(taken_after="2021-05-01", taken_before=date(2021, 5, 31), cameras=["Apple iPhone 12"],
                 near=(48.86, 2.35, 10))
    assert flt == Filter.on({"taken_at": (day_start("2021-05-01"), day_start("2021-06-01")),
                             "camera": ["Apple iPhone 12"], "location": Near(48.86, 2.35, 10.0)})
    assert (flt.taken_after, flt.taken_before, flt.near) == (date(2021, 5, 1), date(2021, 5, 31),
                                                             Near(48.86, 2.35, 10.0))
    assert flt.describe() == ["date taken from 2021-05-01 to 2021-05-31", "camera is one of: Apple iPhone 12",
                              "place within 10 km of 48.86, 2.35"]
    assert repr(Filter(taken_before="2021-01-02")) == "Filter(taken_before=datetime.date(2021, 1, 2))"
    p = {"taken_at": day_start("2021-05-31") + 86_399, "camera": "Apple iPhone 12",
         "location": {"lat": 48.85, "lon": 2.35}}
    assert flt.matches(p)
    assert not flt.matches({**p, "taken_at": day_start("2021-06-01")})  # the day after the last
    assert not flt.matches({**p, "taken_at": None}) and not flt.matches({**p, "location": None})
    assert not flt.matches({**p, "camera": "Apple iPhone 13"})
    assert not flt.matches({**p, "location": {"lat": 48.86, "lon": 2.5}})  # 11 km east
    assert Filter(taken_after="2021-05-01").matches(p) and Filter(taken_before="2021-05-31").matches(p)
    assert haversine_km(48.86, 2.35, 48.86, 2.5) == pytest.approx(10.98, abs=0.01)
    with pytest.raises(ValueError, match="near"):
        Filter(near=(91, 0, 1))


def test_has_location_reference_semantics():
    placed, unplaced = {"location": {"lat": 1.0, "lon": 2.0}}, {"location": None}
    assert Filter(has_location=True).matches(placed) and not Filter(has_location=True).matches(unplaced)
    assert Filter(has_location=False).matches(unplaced) and not Filter(has_location=False).matches(placed)
    assert not Filter(has_location=True).matches({})
    assert Filter(has_location=True) == Filter.on({"location": True})
    assert Filter(has_location=True).has_location is True and Filter(has_location=True).near is None
    assert Filter(has_location=False).describe() == ["has no place"]
    assert repr(Filter(has_location=True)) == "Filter(has_location=True)"
    near = Filter(near=(1, 2, 5), has_location=True)  # near a place implies having one
    assert near == Filter(near=(1, 2, 5)) and near.has_location is True
    assert Filter(has_location=None).is_empty()
    with pytest.raises(ValueError, match="contradict"):
        Filter(near=(1, 2, 5), has_location=False)


def test_filter_by_name_or_by_key():
    flt = Filter(labels=["cat"], min_confidence=0.5, kmeans_clusters=[np.int64(2), "3"], agglo_clusters=None)
    assert flt == Filter.on({"label": ["cat"], "predicted_prob": 0.5, "kmeans_cluster": [2, 3]})
    assert flt.any_of() == {"label": ["cat"], "kmeans_cluster": [2, 3]}
    assert all(type(v) is int for v in flt.kmeans_clusters)  # stored as the payload holds them
    assert flt.min_confidence == 0.5 and flt.folders is None
    assert repr(flt) == "Filter(labels=['cat'], min_confidence=0.5, kmeans_clusters=[2, 3])"
    assert flt.describe() == ["label is one of: cat", "prediction confidence ≥ 50%", "K-Means cluster is one of: 2, 3"]
    with pytest.raises(TypeError, match="no condition 'colour'"):
        Filter(colour=["red"])
    with pytest.raises(KeyError, match="file_name"):
        Filter.on({"file_name": ["x.jpg"]})  # stored, but not filterable
    with pytest.raises(TypeError, match="list"):
        Filter(labels="cat")


def test_every_filter_field_has_a_payload_index_in_qdrant_edge(tmp_path):
    with EdgeIndex(tmp_path / "edge", INFO) as index, index._lease() as shard:
        schema = shard.info().payload_schema
    assert {key: str(info.data_type) for key, info in schema.items()} == {
        f.key: str(SCHEMA_TYPES[f.type]) for f in CONDITION_FIELDS
    }
    assert str(schema["location"].data_type) == "PayloadSchemaType.Geo"
    assert str(schema["kmeans_cluster"].data_type) == "PayloadSchemaType.Integer"


class ServerLike:
    """A local client that passes for a server (local mode skips payload indexes) and records the indexes made."""

    init_options: dict = {}

    def __init__(self, client: QdrantClient):
        self.client = client
        self.created: list[tuple] = []

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def create_payload_index(self, collection: str, key: str, schema, wait: bool) -> None:
        self.created.append((key, schema))


def test_every_filter_field_has_a_payload_index_on_a_qdrant_server():
    client = ServerLike(QdrantClient(":memory:"))
    index = QdrantClientIndex(client, INFO, collection="images_test")  # type: ignore[arg-type]
    assert not index.is_local
    # ... and the write stamp `imgsearch mirror sync` orders and filters by (search/mirror_sync.py).
    assert client.created == [(f.key, _client_schema(f.type)) for f in CONDITION_FIELDS] + [
        (WRITTEN_KEY, _client_schema("integer"))]
    index.close()


def _capture_app():
    """A typer app whose one command records the Filter its schema-generated options build."""
    seen = {}
    app = typer.Typer()

    @app.command()
    @with_filter_options
    def probe(k: int = 1, flt: Filter | None = None, tail: str = "") -> None:
        seen.update(k=k, flt=flt, tail=tail)

    return app, seen


def test_cli_has_one_option_per_filter_field_and_builds_the_filter(tmp_path, monkeypatch):
    app, seen = _capture_app()
    monkeypatch.chdir(tmp_path)
    args = ["--k", "3", "--label", "cat", "--label", "dog", "--cluster", "2", "--min-confidence", "0.25",
            "--folder", "photos", "--tail", "x"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen["flt"] == Filter(labels=["cat", "dog"], kmeans_clusters=[2], min_confidence=0.25,
                                 folders=[str(tmp_path / "photos")])  # folders are resolved, as payloads hold them
    assert seen["k"] == 3 and seen["tail"] == "x"
    assert runner.invoke(app, []).exit_code == 0 and seen["flt"].is_empty()
    assert runner.invoke(app, ["--min-confidence", "1.5"]).exit_code == 2  # the field's bounds
    assert runner.invoke(app, ["--cluster", "two"]).exit_code == 2  # the field's type
    help_text = runner.invoke(cli_app, ["search", "--help"], terminal_width=200).output
    for f in FILTER_FIELDS:
        assert f"--{f.flag}" in help_text
    assert "--data-dir" in help_text and "--k" in help_text
    for c in CONDITION_PARAMS:
        assert f"--{c.flag}" in help_text


@pytest.mark.parametrize(("args", "expected"), [
    (["--taken-after", "2024-01-01", "--taken-before", "2024-12-31", "--camera", "Apple iPhone 13", "--near",
      "38.72,-9.14", "--radius-km", "25"],
     Filter(taken_after="2024-01-01", taken_before="2024-12-31", cameras=["Apple iPhone 13"], near=(38.72, -9.14, 25))),
    (["--near", "-33.87,151.21,2.5km"], Filter(near=(-33.87, 151.21, 2.5))),  # a value may start with "-"
    (["--near", "38.72, -9.14"], Filter(near=(38.72, -9.14, DEFAULT_RADIUS_KM))),
    (["--near", "38.72,-9.14,25", "--radius-km", "25"], Filter(near=(38.72, -9.14, 25))),
    (["--has-location"], Filter(has_location=True)),
    (["--no-location", "--taken-before", "2019-07-31"], Filter(has_location=False, taken_before="2019-07-31")),
])
def test_cli_date_range_and_place_options(args, expected):
    app, seen = _capture_app()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen["flt"] == expected


@pytest.mark.parametrize(("args", "message"), [
    (["--taken-after", "2024-02-30"], "does not match"),
    (["--taken-after", "2024-03-01", "--taken-before", "2024-02-01"], "later than"),
    (["--near", "38.72"], "LAT,LON"),
    (["--near", "91,0"], "latitude"),
    (["--near", "1,2,0km"], "more than 0"),
    (["--near", "1,2,5km", "--radius-km", "6"], "two radii"),
    (["--radius-km", "5"], "needs a place"),
    (["--near", "1,2", "--no-location"], "contradict"),
])
def test_cli_rejects_malformed_dates_and_places(args, message):
    app, _ = _capture_app()
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 2 and message in " ".join(result.output.replace("│", " ").split()), result.output


@pytest.fixture(scope="module")
def tiny_collection(tmp_path_factory) -> tuple[Path, Path]:
    from tests.helpers import write_dataset

    root = tmp_path_factory.mktemp("cli_search")
    photos = write_dataset(root / "photos", per_class=4, seed=0)
    result = runner.invoke(cli_app, ["ingest", str(photos), "--backbone", "tiny", "--data-dir", str(root / "data")])
    assert result.exit_code == 0, result.output
    return photos, root / "data"


def _search(monkeypatch, data_dir: Path, *args: str) -> str:
    monkeypatch.setenv("IMGSEARCH_BACKBONE", "tiny")
    monkeypatch.setenv("IMGSEARCH_NUM_WORKERS", "0")
    result = runner.invoke(cli_app, ["search", *args, "--data-dir", str(data_dir)], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_cli_search_filters_through_qdrant(tiny_collection, monkeypatch):
    photos, data_dir = tiny_collection
    query = str(photos / "sky" / "sky_000.jpg")
    plain = _search(monkeypatch, data_dir, query, "--k", "5")
    assert "FAISS neighbours" in plain
    by_label = _search(monkeypatch, data_dir, query, "--k", "5", "--label", "grass")
    assert "Qdrant filtered search" in by_label
    assert _result_files(by_label) == {f"grass_{i:03d}.jpg" for i in range(4)}
    # A relative folder is resolved as the payloads hold it; label and folder disagree, so nothing matches.
    monkeypatch.chdir(photos)
    none = _search(monkeypatch, data_dir, query, "--label", "grass", "--folder", "apples")
    assert "no image matches these filters" in none
    apples = _search(monkeypatch, data_dir, query, "--k", "3", "--folder", "apples")
    assert len(_result_files(apples)) == 3 and all(name.startswith("apples_") for name in _result_files(apples))


def _result_files(output: str) -> set[str]:
    """The file column of the results table."""
    return {cells[3].strip() for line in output.splitlines() if len(cells := line.split("│")) > 4}
