"""IMGSEARCH_EMBED_PRECISION=int8 through the commands: its own stores, and fp32's left as they were."""

from __future__ import annotations

import pytest

from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from tests.helpers import run_cli, write_dataset

INT8 = {"IMGSEARCH_EMBED_PRECISION": "int8"}


def _identity_and_count(data_dir, **settings):
    with Context(Settings(data_dir=data_dir, backbone="tiny", **settings), role="search") as ctx:
        return ctx.identity, ctx.stores.qdrant.count(), ctx.stores.faiss.count()


@pytest.mark.slow  # more than half a second alone
def test_int8_has_its_own_stores_finds_a_stored_image_and_fp32_stays_untouched(tmp_path, capsys, monkeypatch):
    photos, data_dir = write_dataset(tmp_path / "photos"), tmp_path / "data"
    code, out = run_cli(["ingest", str(photos)], data_dir, capsys, monkeypatch)
    assert code == 0, out
    fp32_before = _identity_and_count(data_dir)

    code, out = run_cli(["ingest", str(photos)], data_dir, capsys, monkeypatch, **INT8)
    assert code == 0 and "backbone: tiny-int8" in out, out
    int8 = _identity_and_count(data_dir, embed_precision="int8")
    assert int8[0].name == "tiny-int8" and int8[0] != fp32_before[0] and int8[1:] == (18, 18)

    query = sorted(photos.rglob("*.jpg"))[0]
    code, out = run_cli(["search", str(query), "--k", "3"], data_dir, capsys, monkeypatch, **INT8)
    assert code == 0 and "backbone: tiny-int8" in out and "│ 1 │ 0.99" in out, out
    assert _stored_similarity(data_dir, query) > 0.9999  # the query path embeds as ingest did: itself at ~1.0

    code, out = run_cli(["search", str(query), "--k", "3"], data_dir, capsys, monkeypatch,
                        IMGSEARCH_EMBED_PRECISION="fp32")  # switched back
    assert code == 0 and "backbone: tiny " in out, out
    assert _identity_and_count(data_dir) == fp32_before


def _stored_similarity(data_dir, image) -> float:
    from PIL import Image

    from imgsearch.db import repository as repo

    with Context(Settings(data_dir=data_dir, backbone="tiny", embed_precision="int8"), role="search") as ctx:
        with ctx.Session() as s:
            image_id = repo.image_by_path(s, str(image)).id
        stored = ctx.stores.qdrant.get_vectors([image_id])[0]
        query = ctx.query_backbone.embed_images([Image.open(image).convert("RGB")])[0]
    return float(stored @ query)


@pytest.mark.slow  # more than half a second alone
def test_int8_search_before_any_int8_ingest_says_what_to_do(tmp_path, capsys, monkeypatch):
    photos, data_dir = write_dataset(tmp_path / "photos"), tmp_path / "data"
    code, out = run_cli(["search", str(next(photos.rglob("*.jpg")))], data_dir, capsys, monkeypatch, **INT8)
    assert code == 2 and "no int8 model in this data dir yet" in out and "or use fp32" in out


def test_int8_needs_the_onnx_runtime(tmp_path):
    from imgsearch.models.backbones import BackboneUnavailable

    ctx = Context(Settings(data_dir=tmp_path, backbone="tiny", embed_precision="int8", runtime="torch"))
    with pytest.raises(BackboneUnavailable, match="IMGSEARCH_RUNTIME auto or onnx"):
        _ = ctx.backbone
