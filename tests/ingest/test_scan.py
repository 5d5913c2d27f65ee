"""Folder scanning: sorted, labelled by folder, bad files skipped with a reason, duplicates found."""

from __future__ import annotations

import logging
import shutil

import pytest
from PIL import Image

from imgsearch.ingest.scan import scan_folder


def test_scan_labels_sorted_and_hashed(tiny_dataset):
    result = scan_folder(tiny_dataset)
    assert result.labels == ["apples", "grass", "sky"]
    assert len(result.images) == 18
    paths = [im.path for im in result.images]
    assert paths == sorted(paths)
    assert all(len(im.content_hash) == 64 for im in result.images)
    assert result.images[0].width == 48 and result.images[0].height == 40
    assert not result.skipped and not result.duplicates
    assert scan_folder(tiny_dataset).fingerprint() == result.fingerprint()


@pytest.mark.slow
def test_bad_files_are_skipped_one_warning_each(tiny_dataset, caplog):
    folder = tiny_dataset / "apples"
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a picture")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    Image.new("1", (10_000, 10_000)).save(folder / "bomb.png")
    Image.new("RGB", (9, 9), (1, 2, 3)).save(folder / "tmp", "JPEG")  # no extension, still an image
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    with caplog.at_level(logging.WARNING):
        result = scan_folder(tiny_dataset)
    reasons = {s.path.name: s.reason for s in result.skipped}
    assert reasons == {"empty.jpg": "empty", "notes.jpg": "not_image", "broken.png": "corrupt", "bomb.png": "too_large"}
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 4
    assert any(im.path.name == "tmp" for im in result.images)
    assert result.n_ignored == 1
    assert len(result.images) == 19


def test_duplicates_are_recorded_not_repeated(tiny_dataset):
    shutil.copy(tiny_dataset / "grass" / "grass_000.jpg", tiny_dataset / "sky" / "copy.jpg")
    result = scan_folder(tiny_dataset)
    assert len(result.images) == 18
    assert [d.path.name for d in result.duplicates] == ["copy.jpg"]
    assert "grass_000.jpg" in result.duplicates[0].message


def test_background_excluded_by_default(tiny_dataset):
    shutil.copytree(tiny_dataset / "sky", tiny_dataset / "BACKGROUND_Google")
    (tiny_dataset / "BACKGROUND_Google" / "extra.jpg").write_bytes(
        (tiny_dataset / "apples" / "apples_000.jpg").read_bytes()[:-1] + b"\x00"
    )
    assert "BACKGROUND_Google" not in scan_folder(tiny_dataset).labels
    assert "BACKGROUND_Google" in scan_folder(tiny_dataset, include_background=True).labels


def test_no_labels_mode(tiny_dataset):
    assert all(im.label is None for im in scan_folder(tiny_dataset, labels_from_folders=False).images)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder not found"):
        scan_folder(tmp_path / "nope")


def test_files_directly_in_the_folder_take_the_root_label(tiny_dataset):
    flat = tiny_dataset / "apples"  # images directly in it, no sub-folders
    assert {im.label for im in scan_folder(flat).images} == {None}
    assert {im.label for im in scan_folder(flat, root_label="apples").images} == {"apples"}
    # Files in sub-folders keep their sub-folder's name; only the loose ones take the root label.
    mixed = scan_folder(tiny_dataset, root_label="mine")
    assert {im.label for im in mixed.images} == {"apples", "grass", "sky"}
