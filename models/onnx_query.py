"""A checked ONNX export, run without torch: for a command that embeds a query or two and exits.

Why: building a backbone imports torch and torchvision and loads the network's weights into torch (4-5 s of a
cold `imgsearch search` here, docs/benchmarks.md), although the CPU runtime then runs the ONNX file. Once an
exported file has been checked against torch (models/onnx_backbone.py), its sidecar records the backbone's
identity and the preprocessing steps; this module runs that file with ONNX Runtime and the same steps in
numpy (PIL's resize and crop as torchvision calls them, then the same float32 arithmetic), so a query's
features are those of the full backbone. Anything it cannot vouch for (no check recorded, another ONNX Runtime,
another weights file, preprocessing it does not know) gives None, and the caller builds the full backbone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgsearch.models.identity import BackboneId

_PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                "nearest": Image.Resampling.NEAREST}


@dataclass(frozen=True)
class NumpyPreprocess:
    """Resize(shorter side) -> CenterCrop -> ToTensor -> Normalize, as torchvision does them on a PIL image."""

    resize: int
    interpolation: str
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def describe(cls, preprocess) -> dict | None:
        """The record of a torchvision Compose of exactly those four steps, or None for any other pipeline."""
        steps = getattr(preprocess, "transforms", None)
        if steps is None or [type(s).__name__ for s in steps] != ["Resize", "CenterCrop", "ToTensor", "Normalize"]:
            return None
        resize, crop, _, norm = steps
        size = resize.size[0] if isinstance(resize.size, list | tuple) and len(resize.size) == 1 else resize.size
        crop_size = tuple(crop.size)
        mode = getattr(resize.interpolation, "value", str(resize.interpolation))
        if not isinstance(size, int) or len(set(crop_size)) != 1 or mode not in _PIL_FILTERS \
                or resize.max_size is not None or resize.antialias is False:
            return None
        return {"resize": size, "interpolation": mode, "crop": int(crop_size[0]),
                "mean": [float(v) for v in norm.mean], "std": [float(v) for v in norm.std]}

    @classmethod
    def from_record(cls, record: dict) -> NumpyPreprocess:
        (m0, m1, m2), (s0, s1, s2) = (float(v) for v in record["mean"]), (float(v) for v in record["std"])
        return cls(int(record["resize"]), str(record["interpolation"]), int(record["crop"]), (m0, m1, m2),
                   (s0, s1, s2))

    def __call__(self, img: Image.Image) -> np.ndarray:
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(self.resize * long / short)  # torchvision's _compute_resized_output_size
        size = (self.resize, new_long) if w <= h else (new_long, self.resize)
        img = img.resize(size, _PIL_FILTERS[self.interpolation])
        w, h = img.size
        top, left = int(round((h - self.crop) / 2.0)), int(round((w - self.crop) / 2.0))
        img = img.crop((left, top, left + self.crop, top + self.crop))
        x = np.asarray(img, dtype=np.uint8).astype(np.float32).transpose(2, 0, 1) / np.float32(255)
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return (x - mean) / std


def light_weights_identity(name: str, resnet50_weights: Path | None = None) -> BackboneId | None:
    """The identity `load_backbone(name)` would give, without torch: the weights file's checksum. None when
    the file cannot be found this way (the full backbone then says why)."""
    from imgsearch.models.backbones import LITE_VARIANTS, REGISTRY, RESNET50_CHECKPOINTS
    from imgsearch.models.files import file_sha256

    path: Path | None = None
    if name in LITE_VARIANTS:
        import importlib

        module_name, cls_name, _, _ = LITE_VARIANTS[name]
        try:
            path = Path(getattr(importlib.import_module(module_name), cls_name).get_model_file_path())
        except ImportError:
            return None
    elif name == "resnet50":
        if resnet50_weights is not None:
            path = Path(resnet50_weights).expanduser()
        else:  # torch.hub.get_dir(), without importing torch
            home = os.getenv("TORCH_HOME") or os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
            cache = Path(home).expanduser() / "hub" / "checkpoints"
            path = next((cache / n for n in RESNET50_CHECKPOINTS if (cache / n).is_file()), None)
    if path is None or not path.is_file():
        return None
    return BackboneId(name, REGISTRY[name].dim, file_sha256(path))


class OnnxQueryBackbone:
    """The parts of a Backbone a query needs (identity, decode side, embed_images), on a checked ONNX file."""

    runtime = "onnxruntime"
    precision = "fp32"

    def __init__(self, path: Path, identity: BackboneId, preprocess: NumpyPreprocess, threads: int):
        from imgsearch.models.onnx_backbone import ort_session

        self.path, self.preprocess = path, preprocess
        self.name, self.dim, self.weights_sha256 = identity.name, identity.dim, identity.weights_sha256
        self.input_size = preprocess.crop
        self.session = ort_session(path, threads)

    @property
    def identity(self) -> BackboneId:
        return BackboneId(self.name, self.dim, self.weights_sha256)

    @property
    def decode_side(self) -> int:
        return self.preprocess.resize

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        from imgsearch.models.onnx_backbone import unit_rows

        x = np.stack([self.preprocess(im) for im in images])
        features = self.session.run(["features"], {"pixels": x})[0]  # the first output; tags are not needed here
        return unit_rows(features.astype(np.float32)).astype(np.float32)

    @classmethod
    def open(cls, cache_dir: Path, identity: BackboneId, threads: int) -> OnnxQueryBackbone | None:
        """The checked export of this backbone in `cache_dir`, or None when there is none to vouch for."""
        from imgsearch.models.onnx_backbone import MIN_COSINE, OPSET, ort_version

        # The export with the tags head (what ingest makes now) or one with features only: both start with them.
        for path in (Path(cache_dir) / f"{identity.tag}.opset{OPSET}{tags}.onnx" for tags in (".tags", "")):
            try:
                record = json.loads(path.with_suffix(".json").read_text())
                st = path.stat()
            except (OSError, ValueError):
                continue
            checked = record.get("checked") or {}
            if record.get("backbone") != identity.as_dict() or record.get("opset") != OPSET \
                    or (checked.get("size"), checked.get("mtime_ns")) != (st.st_size, st.st_mtime_ns) \
                    or not isinstance(record.get("preprocess"), dict) or record.get("onnxruntime") != ort_version() \
                    or not isinstance(record.get("min_cosine"), int | float) or record["min_cosine"] < MIN_COSINE:
                continue
            try:
                return cls(path, identity, NumpyPreprocess.from_record(record["preprocess"]), threads)
            except Exception:  # a file ONNX Runtime cannot run any more: the full backbone checks it again
                continue
        return None
