"""int8 embedding: a backbone's checked fp32 ONNX export, quantised statically by ONNX Runtime, as a backbone of
its own identity.

Why its own identity: int8 features are close to fp32's but not the same (cosine ~0.95-0.97 per image,
docs/benchmarks.md), so int8 queries must meet int8 vectors; and the quantised file depends on the images it was
calibrated on. So the identity is `<name>-int8` with the quantised file's checksum: an int8 collection has its
own feature cache, stores and models, and fp32's are left as they are.

Why the collection's images: static quantisation fixes each activation's int8 range from what the calibration
images produce. Ranges measured on the pictures the collection holds (the folder of its first ingest) fit its
pictures; ranges from other pictures clip or waste int8 steps on them. A seeded sample keeps the file the same
for the same folder.

The quantised file is written next to the fp32 export with a sidecar that records the calibration sample, the
measured agreement with fp32 on held-out images of the same folder (min and 1st-percentile cosine per image) and
whether it was accepted. Below the bounds it is refused, with the figures in the error; a refused file is not
tried again until it is deleted. Later runs read the sidecar: no calibration, and (models/onnx_query.py) no torch.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from imgsearch.models.backbones import BackboneUnavailable
from imgsearch.models.files import atomic_write, file_sha256
from imgsearch.models.identity import BackboneId
from imgsearch.models.onnx_backbone import OPSET, OnnxBackbone, ort_session, ort_version, unit_rows
from imgsearch.models.onnx_query import NumpyPreprocess, OnnxQueryBackbone

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
SUFFIX = "-int8"
CALIBRATION_IMAGES = 128
HELD_OUT_IMAGES = 64
SEED = 0
# Per held-out image, int8 against fp32. Lite2 on 2,000 Caltech-101 images measured min 0.946 and 1st percentile
# 0.973 with retrieval unchanged (docs/benchmarks.md); MinMax calibration, min 0.894, moved P@10 ten times more.
# The bounds sit below the accepted figures with a margin for other collections, above the worse calibration's.
MIN_COSINE = 0.90
MIN_P1_COSINE = 0.94


class Int8Unavailable(BackboneUnavailable):
    """No accepted int8 file can be made or used here; the message says why and what to do."""


class Int8NotCalibrated(Int8Unavailable):
    """No int8 model in this data dir yet, and no folder of the collection to calibrate one on."""


class Int8Refused(Int8Unavailable):
    """The quantised file's features are further from fp32's than the bounds allow."""


def int8_file(fp32_path: Path) -> Path:
    return fp32_path.with_name(f"{fp32_path.stem}.int8.onnx")


def sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def int8_identity(source: BackboneId, path: Path) -> BackboneId:
    return BackboneId(f"{source.name}{SUFFIX}", source.dim, file_sha256(path))


def sample_images(folder: Path, n: int, seed: int = SEED) -> list[Path]:
    """A seeded pick of `n` image files under `folder` (all of them when it has fewer), by the extensions Pillow
    opens."""
    known = Image.registered_extensions()
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in known and p.is_file())
    rng = np.random.default_rng(seed)
    return [files[i] for i in rng.permutation(len(files))[:n]]


def _rgb(path: Path) -> Image.Image:
    """Decoded by Pillow alone (models do not import ingest): calibration needs each activation's range, which a
    decoder's rounding does not move, and the agreement compares int8 with fp32 on the same pixels."""
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def _pixels(backbone: OnnxBackbone, paths: Sequence[Path]) -> np.ndarray:
    rows = []
    for p in paths:
        try:
            rows.append(np.asarray(backbone.preprocess(_rgb(p)), np.float32))
        except Exception as exc:  # an unreadable file is left out of the sample, as ingest skips it
            log.info("calibration: skipping %s (%s)", p, exc)
    if not rows:
        raise Int8Unavailable("no readable images to calibrate the int8 model on")
    return np.stack(rows)


class _Reader:
    """Calibration batches, as ONNX Runtime's CalibrationDataReader hands them out."""

    def __init__(self, x: np.ndarray, batch: int = 8):
        # Equal batches: the Percentile calibrator stacks each batch's outputs and fails on a shorter last one.
        batch = min(batch, len(x))
        self.batches = iter([{"pixels": x[i : i + batch]} for i in range(0, len(x) - batch + 1, batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def _quantise(fp32_path: Path, out: Path, calibration: np.ndarray) -> None:
    """QDQ, per-channel int8 weights, uint8 activations, Percentile calibration: the fastest and closest variant
    measured (benchmarks/bench_int8.py)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepped = out.with_name("prepped.onnx")
    quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
    # Its calibrator prints progress to stdout, and the quantiser logs a line per adjusted weight scale (hundreds)
    # at INFO on the root logger, which the CLI shows: both kept quiet for this one-time step.
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(max(level, logging.WARNING))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(prepped), str(out), _Reader(calibration), quant_format=QuantFormat.QDQ,
                            per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            calibrate_method=CalibrationMethod.Percentile,
                            extra_options={"ActivationSymmetric": False})
    finally:
        root.setLevel(level)


def _features(session: Any, x: np.ndarray) -> np.ndarray:
    return unit_rows(np.concatenate([session.run(None, {"pixels": x[i : i + 32]})[0].astype(np.float32)
                                     for i in range(0, len(x), 32)]))


def agreement(fp32_session: Any, int8_session: Any, x: np.ndarray) -> dict[str, float]:
    """Per-image cosine of the int8 features to fp32's: min and 1st percentile."""
    cos = (_features(fp32_session, x) * _features(int8_session, x)).sum(axis=1)
    return {"min_cosine": float(cos.min()), "p1_cosine": float(np.percentile(cos, 1))}


def quantise(fp32: OnnxBackbone, folder: Path, calibration_images: int = CALIBRATION_IMAGES,
             held_out_images: int = HELD_OUT_IMAGES, seed: int = SEED,
             bounds: tuple[float, float] = (MIN_COSINE, MIN_P1_COSINE)) -> dict[str, Any]:
    """Calibrate on a seeded sample of `folder`, measure on other images of it, write the file and its sidecar.
    Returns the sidecar's record; Int8Refused (after writing both) when the agreement is below `bounds`."""
    paths = sample_images(folder, calibration_images + held_out_images, seed)
    if len(paths) < 2:
        raise Int8Unavailable(f"int8 calibration needs images of the collection, and {folder} has {len(paths)}")
    n_held = min(held_out_images, max(1, len(paths) // 3))
    held, calib = paths[:n_held], paths[n_held:]
    log.info("quantising %s to int8, calibrated on %d images of %s (once per data dir)", fp32.name, len(calib),
             folder)
    path = int8_file(fp32.path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".int8-") as tmp:
        out = Path(tmp) / "int8.onnx"
        try:
            _quantise(fp32.path, out, _pixels(fp32, calib))
            measured = agreement(fp32.session, ort_session(out, fp32.threads), _pixels(fp32, held))
        except Int8Unavailable:
            raise
        except Exception as exc:  # onnxruntime.quantization raises many types
            raise Int8Unavailable(f"quantising {fp32.name} to int8 failed: {type(exc).__name__}: {exc}") from exc
        atomic_write(path, out.read_bytes())
    accepted = measured["min_cosine"] >= bounds[0] and measured["p1_cosine"] >= bounds[1]
    st = path.stat()
    record = {"backbone": int8_identity(fp32.identity, path).as_dict(), "source": fp32.identity.as_dict(),
              "opset": OPSET, "onnxruntime": ort_version(),
              "preprocess": NumpyPreprocess.describe(fp32.preprocess),
              "calibration": {"images": len(calib), "held_out": len(held), "seed": seed, "folder": str(folder),
                              "method": "Percentile, QDQ, per-channel int8 weights, uint8 activations"},
              "agreement": measured, "bounds": {"min_cosine": bounds[0], "p1_cosine": bounds[1]},
              "accepted": accepted, "checked": {"size": st.st_size, "mtime_ns": st.st_mtime_ns}}
    atomic_write(sidecar(path), json.dumps(record, indent=2))
    if not accepted:
        raise Int8Refused(refusal(record))
    return record


def refusal(record: dict[str, Any]) -> str:
    m, b = record["agreement"], record["bounds"]
    return (f"the int8 model of {record['source']['backbone']} is refused: its features agree with fp32's at cosine "
            f"min {m['min_cosine']:.4f} / 1st percentile {m['p1_cosine']:.4f} on {record['calibration']['held_out']} "
            f"held-out images, below the bounds {b['min_cosine']} / {b['p1_cosine']}. Use fp32 "
            "(IMGSEARCH_EMBED_PRECISION=fp32).")


def recorded(path: Path, source: BackboneId) -> dict[str, Any] | None:
    """The sidecar of this very int8 file (same size and modification time, same ONNX Runtime, made from `source`),
    or None: then it is quantised again."""
    try:
        record = json.loads(sidecar(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return None
    checked = record.get("checked") or {}
    if not isinstance(record, dict) or record.get("source") != source.as_dict() or record.get("opset") != OPSET \
            or record.get("onnxruntime") != ort_version() \
            or (checked.get("size"), checked.get("mtime_ns")) != (st.st_size, st.st_mtime_ns):
        return None
    return record


class Int8Backbone(OnnxBackbone):
    """The quantised file run by ONNX Runtime: the fp32 export's preprocessing and head, an identity of its own."""

    precision = "int8"

    def __init__(self, fp32: OnnxBackbone, path: Path, record: dict[str, Any]):  # noqa: D107
        # Not OnnxBackbone.__init__: that exports and checks the fp32 file, which `fp32` has done.
        self.source, self.fp32 = fp32.source, fp32
        identity = BackboneId.from_dict(record["backbone"])
        self.name, self.dim, self.weights_sha256 = identity.name, identity.dim, identity.weights_sha256
        self.input_size, self.preprocess = fp32.input_size, fp32.preprocess
        self.head, self.tag_names, self.device, self.threads = fp32.head, fp32.tag_names, fp32.device, fp32.threads
        self.path, self.record = path, record
        self.session, self.cosine = ort_session(path, self.threads), float(record["agreement"]["min_cosine"])


def load_int8(fp32: OnnxBackbone, calibrate_on: Path | None) -> Int8Backbone:
    """The accepted int8 model of this data dir's fp32 export: the one recorded beside it, else quantised now on
    `calibrate_on` (a folder of the collection). Int8Refused or Int8Unavailable say why there is none."""
    path = int8_file(fp32.path)
    record = recorded(path, fp32.identity)
    if record is None:
        if calibrate_on is None:
            raise Int8NotCalibrated(
                f"int8 embedding is calibrated on the collection's images and {fp32.name} has no int8 model in this "
                "data dir yet: ingest (or train on) a folder with IMGSEARCH_EMBED_PRECISION=int8 first, or use fp32")
        record = quantise(fp32, calibrate_on)
    if not record.get("accepted"):
        raise Int8Refused(refusal(record) + f" Delete {path} to quantise again.")
    return Int8Backbone(fp32, path, record)


def light_int8_identity(cache_dir: Path, source: BackboneId) -> BackboneId | None:
    """The int8 identity recorded beside `source`'s export in `cache_dir`, without torch, or None."""
    for path in _candidates(cache_dir, source):
        record = recorded(path, source)
        if record is not None and record.get("accepted"):
            return BackboneId.from_dict(record["backbone"])
    return None


def open_int8_query(cache_dir: Path, source: BackboneId, threads: int) -> OnnxQueryBackbone | None:
    """The torch-free query path (models/onnx_query.py) on the accepted int8 file, or None."""
    for path in _candidates(cache_dir, source):
        record = recorded(path, source)
        if record is None or not record.get("accepted") or not isinstance(record.get("preprocess"), dict):
            continue
        try:
            query = OnnxQueryBackbone(path, BackboneId.from_dict(record["backbone"]),
                                      NumpyPreprocess.from_record(record["preprocess"]), threads)
        except Exception:  # a file ONNX Runtime cannot run any more: the full backbone says why
            continue
        query.precision = "int8"
        return query
    return None


def _candidates(cache_dir: Path, source: BackboneId) -> list[Path]:
    return [Path(cache_dir) / f"{source.tag}.opset{OPSET}{tags}.int8.onnx" for tags in (".tags", "")]
