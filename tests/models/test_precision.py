"""Mixed precision on the torch runtime: accepted only when the features stay within cosine 0.999 of fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgsearch.models import precision as prec
from imgsearch.models.backbones import BackboneUnavailable, load_backbone
from imgsearch.models.onnx_backbone import min_cosine, sample_batch


@pytest.fixture
def fresh_tiny():
    return load_backbone("tiny")  # its own instance: with_precision changes the backbone it is given


def test_fp32_is_the_backbone_itself(fresh_tiny):
    assert prec.with_precision(fresh_tiny, "fp32") is fresh_tiny and fresh_tiny.autocast_dtype is None


def test_bf16_runs_under_autocast_once_checked(fresh_tiny):
    bb = prec.with_precision(fresh_tiny, "bf16")
    assert bb.precision == "bf16" and bb.autocast_dtype == torch.bfloat16
    x = torch.from_numpy(sample_batch(bb, 3, seed=5))
    out = bb.embed_batch(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_features_too_far_from_fp32_are_refused(fresh_tiny, monkeypatch):
    monkeypatch.setattr(prec, "MIN_COSINE", 1.5)  # no precision can pass
    with pytest.raises(BackboneUnavailable, match="too far from fp32.*IMGSEARCH_PRECISION=fp32"):
        prec.with_precision(fresh_tiny, "bf16")
    assert fresh_tiny.autocast_dtype is None  # left in fp32, usable


def test_unknown_precision(fresh_tiny):
    with pytest.raises(ValueError, match="choose from fp32, bf16, fp16"):
        prec.with_precision(fresh_tiny, "int4")


def test_context_refuses_mixed_precision_on_onnx(tmp_path):
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings

    ctx = Context(Settings(data_dir=tmp_path, backbone="tiny", runtime="onnx", precision="bf16"))
    with pytest.raises(BackboneUnavailable, match="needs the torch runtime"):
        _ = ctx.backbone
    assert Context(Settings(data_dir=tmp_path, backbone="tiny", precision="bf16")).backbone.precision == "bf16"


@pytest.mark.slow
def test_a_real_network_is_accepted_or_refused_by_its_measured_drift():
    """Lite0 under bf16 autocast on this CPU: the gate's decision must follow the drift measured here."""
    fp32 = load_backbone("efficientnet_lite0")
    x = torch.from_numpy(sample_batch(fp32, 4, seed=2))
    want = fp32.embed_batch(x)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = torch.nn.functional.normalize(fp32._forward(x.contiguous(memory_format=torch.channels_last)).float())
    drift_ok = min_cosine(got.numpy(), want) >= prec.MIN_COSINE
    candidate = load_backbone("efficientnet_lite0")
    if drift_ok:
        assert prec.with_precision(candidate, "bf16").precision == "bf16"
    else:
        with pytest.raises(BackboneUnavailable, match="too far from fp32"):
            prec.with_precision(candidate, "bf16")
        assert candidate.autocast_dtype is None
