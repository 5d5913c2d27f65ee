"""The ONNX Runtime path: exported once, cached, checked against torch on every load, torch as the fallback."""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import pytest
import torch

from imgsearch.models import onnx_backbone as ob
from imgsearch.models.backbones import BackboneUnavailable
from imgsearch.models.onnx_backbone import OnnxBackbone, onnx_file, with_runtime


@pytest.mark.slow
def test_onnx_matches_torch_and_is_exported_once(backbone, tmp_path):
    first = with_runtime(backbone, "onnx", tmp_path)
    assert isinstance(first, OnnxBackbone) and first.runtime == "onnxruntime"
    assert first.identity == backbone.identity  # same features, so the same caches and stores
    path = onnx_file(tmp_path, backbone)
    stamp = path.stat().st_mtime_ns
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (5, 3, 8, 8)).astype(np.float32))
    got, want = first.embed_batch(x), backbone.embed_batch(x)
    assert got.dtype == np.float32 and got.shape == (5, backbone.dim)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    assert ob.min_cosine(got, want) > 0.99999

    again = with_runtime(backbone, "onnx", tmp_path)
    assert path.stat().st_mtime_ns == stamp  # the cached export was used, not redone
    np.testing.assert_array_equal(again.embed_batch(x), got)


@pytest.mark.slow
def test_embed_images_goes_through_onnx(backbone, tmp_path):
    from PIL import Image

    onnx = with_runtime(backbone, "onnx", tmp_path)
    im = Image.new("RGB", (30, 20), (200, 30, 90))
    assert ob.min_cosine(onnx.embed_images([im]), backbone.embed_images([im])) > 0.99999


@pytest.mark.slow
def test_a_damaged_cached_file_is_exported_again(backbone, tmp_path, caplog):
    path = onnx_file(tmp_path, backbone)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an onnx model")
    with caplog.at_level(logging.WARNING):
        onnx = with_runtime(backbone, "onnx", tmp_path)
    assert "cannot be run" in caplog.text and "exporting it again" in caplog.text
    assert onnx.cosine > 0.99999 and path.stat().st_size > 100


@pytest.mark.slow
def test_features_that_differ_from_torch_are_refused(backbone, tmp_path, monkeypatch, caplog):
    real = ob._torch_features
    monkeypatch.setattr(ob, "_torch_features", lambda bb, x: real(bb, x)[:, ::-1].copy())  # another network
    with pytest.raises(BackboneUnavailable, match="differ from torch's.*IMGSEARCH_RUNTIME=torch"):
        with_runtime(backbone, "onnx", tmp_path)
    # A backbone that `auto` runs on ONNX falls back to torch, with a warning.
    monkeypatch.setattr(type(backbone), "onnx_default", True)
    with caplog.at_level(logging.WARNING):
        assert with_runtime(backbone, "auto", tmp_path) is backbone
    assert "embedding with torch" in caplog.text


def test_without_onnxruntime_auto_uses_torch_and_onnx_says_what_to_install(backbone, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if it were not installed
    monkeypatch.setattr(type(backbone), "onnx_default", True)
    assert with_runtime(backbone, "auto", tmp_path) is backbone
    with pytest.raises(BackboneUnavailable, match="pip install onnxruntime"):
        with_runtime(backbone, "onnx", tmp_path)


def test_runtime_choices(backbone, tmp_path):
    assert with_runtime(backbone, "torch", tmp_path) is backbone
    assert with_runtime(backbone, "auto", tmp_path) is backbone  # tiny: nothing to gain from an export
    assert not onnx_file(tmp_path, backbone).exists()
    with pytest.raises(ValueError, match="choose from auto, onnx, torch"):
        with_runtime(backbone, "tensorrt", tmp_path)


def test_settings_validate_the_runtime(tmp_path):
    from pydantic import ValidationError

    from imgsearch.ui.services.settings import Settings

    assert Settings(data_dir=tmp_path, runtime="onnx").onnx_dir == (tmp_path / "onnx").resolve()
    with pytest.raises(ValidationError, match="unknown runtime 'cuda'"):
        Settings(data_dir=tmp_path, runtime="cuda")


@pytest.mark.slow
def test_lite0_runs_on_onnx_by_default_with_torchs_features(lite0, tmp_path):
    from tests.helpers import write_dataset

    onnx = with_runtime(lite0, "auto", tmp_path)
    assert isinstance(onnx, OnnxBackbone)
    root = write_dataset(tmp_path / "imgs", per_class=2)
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in sorted(root.rglob("*.jpg"))]
    assert ob.min_cosine(onnx.embed_images(images), lite0.embed_images(images)) >= ob.MIN_COSINE


@pytest.mark.slow
def test_the_export_does_not_flood_an_info_log(backbone, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        with_runtime(backbone, "onnx", tmp_path)
    chatter = [r for r in caplog.records if r.name.startswith(("onnxscript", "onnx_ir", "torch.onnx"))]
    assert chatter == []


@pytest.mark.slow
def test_an_exported_file_is_checked_against_torch_once_not_on_every_load(backbone, tmp_path, monkeypatch):
    """Issue 25, item 1: the check ran torch's forward pass on every start (a cold CLI search paid for it)."""
    with_runtime(backbone, "onnx", tmp_path)
    calls = []
    real = ob._torch_features
    monkeypatch.setattr(ob, "_torch_features", lambda bb, x: calls.append(1) or real(bb, x))
    again = with_runtime(backbone, "onnx", tmp_path)
    assert calls == [] and again.cosine > 0.99999  # the recorded check
    # A file changed since it was checked (same size, another time) is checked again.
    path = onnx_file(tmp_path, backbone)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    with_runtime(backbone, "onnx", tmp_path)
    assert calls == [1]
