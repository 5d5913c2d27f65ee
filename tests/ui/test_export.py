"""Export as CSV/JSON and into a folder (copies or links, never overwriting), and `imgsearch export`."""

from __future__ import annotations

import csv
import io
import json

import pytest

from imgsearch.ingest.curation import find_duplicates
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ui.services.export import ExportError, export_to_folder, to_text
from tests.helpers import run_cli, write_dataset


def _rows(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        path = folder / f"image_{i}.jpg"
        path.write_bytes(b"x" * (i + 1))
        rows.append({"id": 10 + i, "path": str(path), "file_name": path.name, "label": "a,b" if i else None})
    return rows


def test_csv_and_json_round_trip(tmp_path):
    rows = _rows(tmp_path / "src")
    back = list(csv.DictReader(io.StringIO(to_text(rows, "csv"))))
    assert [r["id"] for r in back] == ["10", "11", "12"] and back[1]["label"] == "a,b"  # quoted, not split
    assert json.loads(to_text(rows, "json")) == rows
    assert to_text([], "csv") == ""
    with pytest.raises(ExportError, match="unknown format"):
        to_text(rows, "xml")


def test_export_copies_links_and_never_overwrites(tmp_path):
    rows = _rows(tmp_path / "src")
    done = export_to_folder(rows, tmp_path / "out" / "new", fmt="json")
    assert sorted(p.name for p in (tmp_path / "out" / "new").iterdir()) == [
        "10_image_0.jpg", "11_image_1.jpg", "12_image_2.jpg", "export.json"]
    assert (tmp_path / "out" / "new" / "11_image_1.jpg").read_bytes() == b"xx"
    assert [r["exported_as"] for r in json.loads(done.manifest.read_text())] == [p.name for p in done.written]
    # A second export into the same folder: refused before anything is written.
    (tmp_path / "src" / "image_0.jpg").write_bytes(b"changed")
    with pytest.raises(ExportError, match="4 file\\(s\\) already exist"):
        export_to_folder(rows, tmp_path / "out" / "new", fmt="json")
    assert (tmp_path / "out" / "new" / "10_image_0.jpg").read_bytes() == b"x"
    # Links, into another folder; a file that is gone is left out and reported.
    (tmp_path / "src" / "image_2.jpg").unlink()
    linked = export_to_folder(rows, tmp_path / "links", link=True)
    assert [p.is_symlink() for p in linked.written] == [True, True]
    assert linked.missing == [rows[2]["path"]] and linked.manifest.name == "export.csv"
    (tmp_path / "afile").write_text("")
    with pytest.raises(ExportError, match="not a folder"):
        export_to_folder(rows, tmp_path / "afile")


@pytest.fixture
def grouped(ctx, tmp_path):
    photos = write_dataset(tmp_path / "photos", per_class=3, seed=0)
    ingest_folder(photos, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, ctx.ingest_options(),
                  progress=False)
    scan = find_duplicates(ctx.Session, ctx.stores, threshold=0.9)
    ctx.close()
    return ctx, photos, scan


@pytest.mark.slow
def test_export_command_group_query_and_errors(grouped, tmp_path, capsys, monkeypatch):
    ctx, photos, scan = grouped
    data_dir = ctx.settings.data_dir
    group, members = next(iter(scan.groups.items()))
    code, out = run_cli(["export", "--group", str(group), "--format", "json"], data_dir, capsys, monkeypatch)
    assert code == 0, out
    assert sorted(r["id"] for r in json.loads(out)) == members
    assert all(r["duplicate_group"] == group for r in json.loads(out))

    code, out = run_cli(["export", "--group", str(group), "--to", str(tmp_path / "g")], data_dir, capsys,
                        monkeypatch)
    assert code == 0, out  # the copies are counted on disk
    assert len(list((tmp_path / "g").glob("*.jpg"))) == len(members) and (tmp_path / "g" / "export.csv").is_file()
    code, out = run_cli(["export", "--group", str(group), "--to", str(tmp_path / "g")], data_dir, capsys,
                        monkeypatch)
    assert code == 2 and "already exist" in out and "Nothing was written" in out

    query = photos / "apples" / "apples_000.jpg"
    code, out = run_cli(["export", "--query", str(query), "--k", "4", "--plain"], data_dir, capsys, monkeypatch)
    assert code == 0, out
    code, out = run_cli(["export", "--query", str(query), "--k", "4", "--plain", "--format", "json"], data_dir,
                        capsys, monkeypatch)
    results = json.loads(out)
    assert [r["rank"] for r in results] == [1, 2, 3, 4] and results[0]["score"] >= results[-1]["score"]
    assert all(r["path"] != str(query) for r in results)  # the query itself is left out

    for args, message in ((["export"], "exactly one of"),
                          (["export", "--group", "1", "--suspects"], "got --group, --suspects"),
                          (["export", "--group", "999"], "no near-duplicate group 999"),
                          (["export", "--cluster", "0"], "no indexed image is in kmeans cluster 0"),
                          (["export", "--suspects"], "run `imgsearch suspects` first"),
                          (["export", "--group", str(group), "--format", "xml"], "unknown --format"),
                          (["export", "--group", str(group), "--link"], "--link needs --to")):
        code, out = run_cli(args, data_dir, capsys, monkeypatch)
        assert code == 2 and message in out, (args, out)


def test_export_command_cluster_and_suspects_read_the_catalogue(grouped, capsys, monkeypatch):
    from imgsearch.db import repository as repo

    ctx, _, _ = grouped
    with ctx.Session.begin() as s:  # as `train` and `suspects` record them
        repo.update_images(s, [{"id": i, "kmeans_cluster": i % 2} for i in range(1, 10)])
        repo.update_images(s, [{"id": 4, "label_score": 0.1, "suggested_label": "sky"},
                               {"id": 2, "label_score": 0.05, "suggested_label": "grass"}])
    code, out = run_cli(["export", "--cluster", "1", "--format", "json"], ctx.settings.data_dir, capsys, monkeypatch)
    assert code == 0, out
    assert [r["id"] for r in json.loads(out)] == [1, 3, 5, 7, 9]
    code, out = run_cli(["export", "--suspects", "--format", "json"], ctx.settings.data_dir, capsys, monkeypatch)
    rows = json.loads(out)
    assert [(r["id"], r["suggested_label"]) for r in rows if r["suggested_label"] != r["label"]][:1] == [(2, "grass")]
    assert {"label_score", "suggested_label", "path"} <= set(rows[0])
