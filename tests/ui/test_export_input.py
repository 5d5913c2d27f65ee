"""Export of awkward catalogue values: names too long for the file system, cells a spreadsheet would run."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest

from imgsearch.ui.services.export import export_to_folder, to_text


def test_csv_cells_a_spreadsheet_would_run_are_quoted():
    rows = [{"id": 1, "score": -0.25, "label": '=HYPERLINK("http://evil.example","click")', "path": "+1",
             "file_name": "@SUM(A1)", "predicted_label": "-2+3", "a": "\tx", "b": "\rx", "c": "plain", "d": None}]
    back = list(csv.DictReader(io.StringIO(to_text(rows, "csv"))))[0]
    assert back["label"] == '\'=HYPERLINK("http://evil.example","click")'
    assert (back["path"], back["file_name"], back["predicted_label"]) == ("'+1", "'@SUM(A1)", "'-2+3")
    assert (back["a"], back["b"], back["c"], back["d"]) == ("'\tx", "'\rx", "plain", "")
    assert back["score"] == "-0.25"  # numbers are numbers, not formulas
    assert json.loads(to_text(rows, "json")) == rows  # JSON is data: unchanged


@pytest.mark.parametrize("link", [False, True])
def test_a_name_too_long_with_its_id_is_shortened_not_a_half_export(tmp_path, link):
    src = tmp_path / "src"
    src.mkdir()
    long_name = "é" * 124 + ".jpg"  # 252 bytes in UTF-8: fits, but not with the "<id>_" prefix
    rows = []
    for i, name in enumerate(["a.jpg", long_name, "z.jpg"]):
        (src / name).write_bytes(bytes([i]) * 10)
        rows.append({"id": 100 + i, "path": str(src / name), "file_name": name, "label": None})
    done = export_to_folder(rows, tmp_path / "out", link=link)
    assert len(done.written) == 3 and done.manifest.exists()
    names = [p.name for p in done.written]
    assert all(len(os.fsencode(n)) <= 255 for n in names)
    assert names[1].startswith("101_") and names[1].endswith(".jpg")
    assert done.written[1].read_bytes() == bytes([1]) * 10
    manifest = list(csv.DictReader(io.StringIO(done.manifest.read_text(encoding="utf-8"))))
    assert [r["exported_as"] for r in manifest] == names
