"""Files an ingest must skip without reading them whole or failing: names that are not UTF-8, videos."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch.db import repository as repo
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ingest.scan import scan_folder
from tests.helpers import make_image


def _bytes_path(folder: Path, *names: bytes) -> bytes:
    return os.path.join(os.fsencode(folder), *names)


@pytest.fixture
def badly_named(tiny_dataset):
    """tiny_dataset plus a file whose name is not UTF-8 and a folder whose name is not UTF-8 holding one image."""
    rng = np.random.default_rng(7)
    make_image(rng, (10, 10, 200), "h").save(tiny_dataset / "tmp.jpg")
    shutil.move(tiny_dataset / "tmp.jpg", _bytes_path(tiny_dataset, b"apples", b"caf\xe9.jpg"))
    os.mkdir(_bytes_path(tiny_dataset, b"f\xfeld"))
    make_image(rng, (200, 200, 10), "v").save(tiny_dataset / "tmp.jpg")
    shutil.move(tiny_dataset / "tmp.jpg", _bytes_path(tiny_dataset, b"f\xfeld", b"x.jpg"))
    return tiny_dataset


def test_a_name_that_is_not_utf8_is_skipped_as_bad_name(badly_named):
    result = scan_folder(badly_named)
    assert len(result.images) == 18
    bad = [f for f in result.skipped if f.reason == "bad_name"]
    assert len(bad) == 2
    for f in bad:
        str(f.path).encode("utf-8")  # printable: it goes into the catalogue and onto the terminal
    assert len(result.fingerprint()) == 64


@pytest.mark.slow
def test_ingest_with_a_badly_named_file_ingests_the_rest(ctx, badly_named):
    report = ingest_folder(badly_named, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, ctx.trained(),
                           ctx.ingest_options(), progress=False)
    assert (report.outcome, report.n_indexed) == ("ok", 18)
    assert sorted(r for _, r, _ in report.skipped) == ["bad_name", "bad_name"]
    with ctx.Session() as s:
        assert [f.reason for f in repo.skipped_files(s, report.run_id)] == ["bad_name", "bad_name"]


def _mp4_header(brand: bytes, compatible: tuple[bytes, ...] = (b"isom",)) -> bytes:
    body = brand + b"\x00\x00\x02\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body


def test_a_video_is_skipped_as_video(tiny_dataset):
    folder = tiny_dataset / "apples"
    (folder / "clip.mp4").write_bytes(_mp4_header(b"isom", (b"isom", b"avc1")) + b"\x00\x00\x00\x08free" * 100)
    (folder / "clip.mov").write_bytes(_mp4_header(b"qt  ", (b"qt  ",)) + bytes(800))
    (folder / "clip.avi").write_bytes(b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(800))
    (folder / "clip.webm").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(800))
    (folder / "clip.ts").write_bytes((b"\x47" + bytes(187)) * 4)
    # HEIC/AVIF share the ISO-BMFF box: they are images, and these, a header and nothing more, are corrupt ones.
    (folder / "photo.heic").write_bytes(_mp4_header(b"heic", (b"mif1", b"heic")) + bytes(800))
    (folder / "photo.avif").write_bytes(_mp4_header(b"avif", (b"avif", b"mif1")) + bytes(800))
    (folder / "seq.heic").write_bytes(_mp4_header(b"msf1", (b"msf1", b"iso8")) + bytes(800))
    reasons = {f.path.name: f.reason for f in scan_folder(tiny_dataset).skipped}
    assert reasons == {"clip.mp4": "video", "clip.mov": "video", "clip.avi": "video", "clip.webm": "video",
                       "clip.ts": "video", "photo.heic": "corrupt", "photo.avif": "corrupt",
                       "seq.heic": "corrupt"}


# The peak resident set of the scanning process, from /proc: a child's ru_maxrss starts at its parent's (Linux
# keeps it across fork and exec), and the pytest process holds torch.
PEAK_RSS = """
import json, sys
from pathlib import Path
from imgsearch.ingest.scan import scan_folder
from tests.helpers import make_image

def peak_kib():
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])

scan_folder(Path(sys.argv[1]) / "grass")  # warm up (imports, Pillow's plugins) on a folder without the big file
before = peak_kib()
result = scan_folder(sys.argv[1])
print(json.dumps({"grew_kib": peak_kib() - before, "n": len(result.images),
                  "skipped": {f.path.name: f.reason for f in result.skipped}}))
"""


@pytest.mark.slow
def test_a_large_video_is_not_read_into_memory(tiny_dataset):
    video = tiny_dataset / "apples" / "big.mp4"
    with open(video, "wb") as f:
        f.write(_mp4_header(b"mp42", (b"mp42", b"isom")))
        f.truncate(200 * 1024 * 1024)  # sparse: takes no disk space
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, str(tiny_dataset)], capture_output=True, text=True,
                         check=True, timeout=120)
    found = json.loads(out.stdout)
    assert found["grew_kib"] < 20 * 1024, found  # far below the file's 200 MiB
    assert found["n"] == 18 and found["skipped"] == {"big.mp4": "video"}


@pytest.mark.slow
def test_a_large_image_is_hashed_without_being_held_whole(tiny_dataset):
    """A large file that is an image (a JPEG with a long tail after its end marker) is hashed by streaming."""
    big = tiny_dataset / "apples" / "apples_000.jpg"
    with open(big, "ab") as f:  # JPEG decoders stop at the end-of-image marker: trailing bytes are ignored
        f.truncate(120 * 1024 * 1024)
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, str(tiny_dataset)], capture_output=True, text=True,
                         check=True, timeout=120)
    found = json.loads(out.stdout)
    assert found["n"] == 18
    assert found["grew_kib"] < 20 * 1024, found


def test_ingesting_a_folder_whose_own_name_is_not_utf8_is_one_line(tmp_path, capsys, monkeypatch):
    from tests.helpers import run_cli

    folder = _bytes_path(tmp_path, b"caf\xe9")
    os.mkdir(folder)
    make_image(np.random.default_rng(0), (10, 10, 200), "h").save(tmp_path / "x.jpg")
    shutil.move(tmp_path / "x.jpg", os.path.join(folder, b"x.jpg"))
    for queue in ([], ["--queue"]):
        code, out = run_cli(["ingest", os.fsdecode(folder), *queue], tmp_path / "data", capsys, monkeypatch)
        assert code == 2 and "UTF-8" in out and "Traceback" not in out, out
