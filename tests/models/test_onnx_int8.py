"""int8 embedding (models/onnx_int8.py): an identity of its own, a refusal with its figures, recorded once."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from imgsearch.models import onnx_int8
from imgsearch.models.onnx_backbone import OnnxBackbone
from imgsearch.models.onnx_int8 import Int8Refused, Int8Unavailable, int8_file, load_int8, quantise
from tests.helpers import write_dataset


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The fp32 export, made once for the module (the export and its check against torch take seconds)."""
    from imgsearch.models.backbones import load_backbone
    from tests.helpers.stores import TEST_BACKBONE

    folder = tmp_path_factory.mktemp("onnx")
    OnnxBackbone(load_backbone(TEST_BACKBONE), folder)
    return folder


@pytest.fixture
def fp32(backbone, exported, tmp_path):
    """A copy of the export with its check record, so each test quantises beside its own file."""
    shutil.copytree(exported, tmp_path / "onnx")
    return OnnxBackbone(backbone, tmp_path / "onnx")


def test_the_int8_model_has_its_own_identity_and_is_quantised_once(fp32, tmp_path, monkeypatch):
    folder = write_dataset(tmp_path / "photos")
    int8 = load_int8(fp32, folder)
    assert int8.name == "tiny-int8" and int8.dim == fp32.dim
    assert int8.identity != fp32.identity and int8.identity.tag != fp32.identity.tag
    assert int8.path == int8_file(fp32.path) and int8.path.is_file()
    record = json.loads(int8.path.with_suffix(".json").read_text())
    assert record["accepted"] and record["calibration"]["images"] + record["calibration"]["held_out"] == 18
    assert record["agreement"]["min_cosine"] >= onnx_int8.MIN_COSINE
    x = np.stack([fp32.preprocess(img) for img in _images(folder)])
    cos = (int8.embed_batch(x) * fp32.embed_batch(x)).sum(axis=1)
    assert cos.min() > 0.99  # the tiny backbone is a reshape: int8 loses only the pixels' rounding

    def no_quantising(*args, **kwargs):
        raise AssertionError("quantised again")

    monkeypatch.setattr(onnx_int8, "_quantise", no_quantising)
    again = load_int8(fp32, None)  # a later run: the recorded file, no calibration folder needed
    assert again.identity == int8.identity


def test_a_quantisation_below_the_bounds_is_refused_with_its_figures(fp32, tmp_path, monkeypatch):
    folder = write_dataset(tmp_path / "photos")
    with pytest.raises(Int8Refused) as refused:
        quantise(fp32, folder, bounds=(1.01, 1.01))
    message = str(refused.value)
    assert "refused" in message and "below the bounds 1.01 / 1.01" in message
    assert "Use fp32 (IMGSEARCH_EMBED_PRECISION=fp32)" in message
    assert "min 0.99" in message or "min 1.00" in message
    monkeypatch.setattr(onnx_int8, "_quantise", lambda *a: pytest.fail("a refused file is not quantised again"))
    with pytest.raises(Int8Refused, match="Delete .*int8.onnx to quantise again"):
        load_int8(fp32, folder)


def test_without_a_model_or_a_folder_to_calibrate_on_it_says_what_to_do(fp32):
    with pytest.raises(Int8Unavailable, match="ingest .* with IMGSEARCH_EMBED_PRECISION=int8 first, or use fp32"):
        load_int8(fp32, None)


def _images(folder):
    from PIL import Image

    return [Image.open(p).convert("RGB") for p in sorted(folder.rglob("*.jpg"))[:6]]


@pytest.mark.slow  # more than half a second alone
def test_the_torch_free_query_path_embeds_with_the_same_int8_file(tmp_path):
    from imgsearch.models.onnx_int8 import light_int8_identity, open_int8_query
    from tests.models.test_onnx_query import _Cropped, _pictures

    fp32 = OnnxBackbone(_Cropped(), tmp_path / "onnx", threads=1)
    int8 = load_int8(fp32, write_dataset(tmp_path / "photos"))
    assert light_int8_identity(tmp_path / "onnx", fp32.identity) == int8.identity
    query = open_int8_query(tmp_path / "onnx", fp32.identity, threads=1)
    assert query is not None and query.identity == int8.identity and query.precision == "int8"
    pictures = _pictures(1)
    np.testing.assert_allclose(query.embed_images(pictures), int8.embed_images(pictures), atol=1e-5)
