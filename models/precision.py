"""Mixed precision for the torch runtime (GPUs; bf16 also runs on CPUs with AVX-512 BF16), checked against fp32.

A backbone run in bf16 or fp16 keeps its identity (the same network and weights) only because its features are
checked to stay within cosine >= 0.999 of fp32 on every load; below that the precision is refused.
"""

from __future__ import annotations

import numpy as np

from imgsearch.models.backbones import Backbone, BackboneUnavailable

PRECISIONS = ("fp32", "bf16", "fp16")
MIN_COSINE = 0.999  # per image, against fp32


def _dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def with_precision(backbone: Backbone, precision: str) -> Backbone:
    """`backbone` running its forward pass under autocast to `precision`, after checking its features.

    BackboneUnavailable when the device cannot run that precision or the features drift too far from fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return backbone
    if backbone.runtime != "torch":
        raise BackboneUnavailable(f"{precision} runs on the torch runtime; set IMGSEARCH_RUNTIME=torch")
    import torch

    from imgsearch.models.onnx_backbone import min_cosine, sample_batch

    x = torch.from_numpy(sample_batch(backbone, 4, seed=2))
    want = backbone.embed_batch(x)
    backbone.autocast_dtype = _dtype(precision)
    try:
        got = backbone.embed_batch(x)
    except RuntimeError as exc:  # e.g. an op without a kernel for this dtype on this device
        backbone.autocast_dtype = None
        raise BackboneUnavailable(f"{precision} cannot run on {backbone.device}: {exc}") from exc
    cosine = min_cosine(got, want)
    if not np.isfinite(cosine) or cosine < MIN_COSINE:
        backbone.autocast_dtype = None
        raise BackboneUnavailable(
            f"{backbone.name} in {precision} gives features too far from fp32 (cosine {cosine:.5f} < {MIN_COSINE}); "
            "use IMGSEARCH_PRECISION=fp32"
        )
    backbone.precision = precision
    return backbone
