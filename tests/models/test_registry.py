"""The backbone registry is the one list: settings validate against it, the CLI lists it, each entry is honest."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from typer.testing import CliRunner

from imgsearch.models.backbones import CHOICES, REGISTRY, BackboneOptions, ResNet50Backbone, load_backbone
from imgsearch.ui.cli import app
from imgsearch.ui.services.settings import Settings


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (30 + 7 * i, 41, 3), dtype=np.uint8)) for i in range(n)]


def test_settings_reject_an_unknown_backbone_naming_the_choices():
    with pytest.raises(ValidationError) as info:
        Settings(backbone="nope")
    message = str(info.value)
    assert "unknown backbone 'nope'" in message
    assert all(name in message for name in CHOICES) and set(REGISTRY) < set(CHOICES)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_settings_accept_every_registry_name(name):
    assert Settings(backbone=name).backbone == name


# Every entry but the weightless one loads a real network: slow. ResNet-50 is built without its pretrained
# weights (they may not be downloadable here); its architecture, and so its dimension, is the same.
@pytest.mark.parametrize("name", [n if n == "tiny" else pytest.param(n, marks=pytest.mark.slow) for n in REGISTRY])
def test_declared_dim_is_what_the_backbone_returns(name):
    spec = REGISTRY[name]
    bb = ResNet50Backbone(pretrained=False) if name == "resnet50" else spec.build(BackboneOptions(allow_download=False))
    xb = bb.embed_images(_images(2))
    assert (bb.name, bb.dim, bb.identity.dim) == (name, spec.dim, spec.dim)
    assert xb.shape == (2, spec.dim) and xb.dtype == np.float32


@pytest.mark.parametrize("command", ["train", "ingest"])
def test_cli_help_lists_every_registry_name(command):
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    missing = [name for name in REGISTRY if not re.search(rf"(?<![\w-]){name}(?![\w-])", result.output)]
    assert missing == [], result.output


def test_tiny_rows_are_unit_float32_and_the_same_from_two_loads():
    first, second = load_backbone("tiny"), load_backbone("tiny")
    xb = first.embed_images(_images(4))
    assert xb.shape == (4, 192) and xb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(xb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(xb, second.embed_images(_images(4)))
    assert first.identity == second.identity and first.identity.name == "tiny"
    # Different images give different rows (a constant output would pass everything above).
    assert np.abs(xb[0] @ xb[1]) < 0.99
