"""The CPU runtime: a backbone exported once to ONNX (cached under its weights checksum) and run by ONNX Runtime.

Same features as torch (each exported file is checked once: cosine >= 0.9999 per image against the torch forward
pass, and for a backbone with an ImageNet head its class probabilities, a second output, within MAX_PROB_DIFF;
recorded in the file's sidecar with its size and modification time; a changed file is checked again), so
vectors from either runtime share the backbone's identity, its feature cache and its stores. Measured on a 2-core
CPU (benchmarks/bench_embed.py), ONNX Runtime runs the backbones several times faster than torch at the
pipeline's batch size.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgsearch.models.backbones import Backbone, BackboneUnavailable
from imgsearch.models.files import atomic_write
from imgsearch.models.onnx_query import NumpyPreprocess
from imgsearch.models.tags import softmax

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnx", "torch")
MIN_COSINE = 0.9999  # per image, ONNX Runtime against torch; below this the export is refused
MAX_PROB_DIFF = 1e-3  # largest class probability difference, ONNX Runtime against torch (tags)
OPSET = 18


class OnnxUnavailable(RuntimeError):
    """ONNX Runtime cannot run this backbone here (not installed, export failed, or features differ)."""


def onnx_file(cache_dir: Path, backbone: Backbone) -> Path:
    # A file with the head's logits as second output has its own name: one exported before has features only.
    tags = ".tags" if backbone.head is not None else ""
    return Path(cache_dir) / f"{backbone.identity.tag}.opset{OPSET}{tags}.onnx"


def output_names(backbone: Backbone) -> list[str]:
    return ["features", "logits"] if backbone.head is not None else ["features"]


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


class _Features:
    """The module exported: the backbone's pooled features, before normalisation (done in numpy after), and with
    a head, its logits from the same pooled features (softmax in numpy after)."""

    @staticmethod
    def module(backbone: Backbone):
        import torch

        class Features(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = backbone.model  # registered, so its weights are exported as initialisers
                self.head = backbone.head

            def forward(self, x):
                pooled = backbone._forward(x)
                return pooled if self.head is None else (pooled, self.head(pooled))

        return Features().eval()


def sample_batch(backbone: Backbone, n: int, seed: int) -> np.ndarray:
    """Seeded image-like input: smooth colour gradients plus noise, normalised the way `preprocess` does."""
    rng = np.random.default_rng(seed)
    s = backbone.input_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    out = np.empty((n, 3, s, s), np.float32)
    for i in range(n):
        for c in range(3):
            a, b, d = rng.uniform(-1, 1, 3)
            out[i, c] = a * xx + b * yy + d * 0.5 + rng.normal(0, 0.3, (s, s))
    return np.clip(out, -2.5, 2.5)


def _torch_features(backbone: Backbone, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        t = torch.from_numpy(x).to(memory_format=torch.channels_last)
        return backbone._forward(t).float().numpy()


def _torch_probs(backbone: Backbone, x: np.ndarray) -> np.ndarray | None:
    import torch

    return None if backbone.head is None else backbone.embed_and_classify(torch.from_numpy(x))[1]


def max_prob_diff(got_logits: np.ndarray | None, expected: np.ndarray | None) -> float:
    if expected is None:
        return 0.0
    if got_logits is None:
        return float("inf")
    return float(np.abs(softmax(got_logits.astype(np.float32)) - expected).max())


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((unit_rows(a) * unit_rows(b)).sum(axis=1).min())


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle threads sleep instead of spinning: when several processes embed at once (the worker beside the app,
    # two ingests) spinning threads steal each other's cores, and throughput collapses.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _export(backbone: Backbone, path: Path) -> None:
    import torch

    x = torch.from_numpy(sample_batch(backbone, 2, seed=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter's optimiser logs every pass at INFO, hundreds of lines in a CLI that logs INFO: keep it quiet.
    for name in ("onnxscript", "onnx_ir", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        out = Path(tmp) / "model.onnx"
        try:
            program = torch.onnx.export(
                _Features.module(backbone), (x,), dynamo=True, opset_version=OPSET, verbose=False,
                input_names=["pixels"], output_names=output_names(backbone),
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}},
            )
            if program is None:  # the dynamo exporter always returns its program; None is the legacy one's
                raise OnnxUnavailable("the exporter returned no program")
            program.save(str(out), external_data=False)
        except Exception as exc:  # the exporter raises many types (torch.export, onnxscript, onnx checker)
            raise OnnxUnavailable(f"exporting {backbone.name} to ONNX failed: {type(exc).__name__}: {exc}") from exc
        atomic_write(path, out.read_bytes())


class OnnxBackbone(Backbone):
    """`source`'s network run by ONNX Runtime: same name, identity, preprocessing and (checked) features."""

    runtime = "onnxruntime"

    def __init__(self, source: Backbone, cache_dir: Path, threads: int | None = None):
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise OnnxUnavailable("onnxruntime is not installed: pip install onnxruntime") from exc
        import torch

        self.source = source
        self.name, self.dim, self.weights_sha256 = source.name, source.dim, source.weights_sha256
        self.input_size = source.input_size
        self.preprocess = source.preprocess
        self.head, self.tag_names = source.head, source.tag_names
        self.device = torch.device("cpu")
        self.threads = threads or physical_cores()
        self.path = onnx_file(cache_dir, source)
        self.session, self.cosine = self._load()

    def _sidecar(self) -> Path:
        return self.path.with_suffix(".json")

    def _recorded_check(self) -> float | None:
        """The cosine recorded when this very file (same size and modification time) was checked against torch
        with this ONNX Runtime, or None: then it is checked again."""
        try:
            st = self.path.stat()
            record = json.loads(self._sidecar().read_text())
        except (OSError, ValueError):
            return None
        checked = record.get("checked") or {}
        if (checked.get("size"), checked.get("mtime_ns")) != (st.st_size, st.st_mtime_ns) \
                or record.get("onnxruntime") != ort_version() or record.get("opset") != OPSET \
                or record.get("backbone") != self.source.identity.as_dict() \
                or record.get("outputs", ["features"]) != output_names(self.source) \
                or record.get("preprocess", False) != NumpyPreprocess.describe(self.source.preprocess):
            return None  # a record without "preprocess" predates models/onnx_query.py: checked once more
        cosine = record.get("min_cosine")
        return float(cosine) if isinstance(cosine, int | float) and cosine >= MIN_COSINE else None

    def _record_check(self, cosine: float) -> None:
        st = self.path.stat()
        atomic_write(self._sidecar(), json.dumps(
            {"backbone": self.source.identity.as_dict(), "opset": OPSET, "min_cosine": cosine,
             "outputs": output_names(self.source),
             # what models/onnx_query.py needs to run this file for a query without torch (None: it cannot)
             "preprocess": NumpyPreprocess.describe(self.source.preprocess),
             "torch": torch_version(), "onnxruntime": ort_version(),
             "checked": {"size": st.st_size, "mtime_ns": st.st_mtime_ns}}, indent=2))

    def _load(self):
        # Checked against torch once per exported file and recorded beside it: a later start (a CLI search)
        # needs no torch forward pass. A changed file or another ONNX Runtime is checked again.
        recorded = self._recorded_check() if self.path.is_file() else None
        if recorded is not None:
            try:
                return ort_session(self.path, self.threads), recorded
            except Exception as exc:  # damaged since: the full check below exports it again
                log.warning("the cached ONNX file %s cannot be run (%s); checking it again", self.path, exc)
        check = sample_batch(self.source, 2, seed=1)
        expected = _torch_features(self.source, check)
        expected_probs = _torch_probs(self.source, check)
        for attempt in ("cached", "fresh"):
            if attempt == "fresh" or not self.path.is_file():
                log.info("exporting %s to ONNX (once per backbone): %s", self.name, self.path)
                _export(self.source, self.path)
            try:
                session = ort_session(self.path, self.threads)
                outputs = session.run(None, {"pixels": check})
                got = outputs[0]
                prob_diff = max_prob_diff(outputs[1] if len(outputs) > 1 else None, expected_probs)
            except Exception as exc:  # a damaged or foreign file: export again, once
                if attempt == "fresh":
                    raise OnnxUnavailable(f"ONNX Runtime cannot run {self.path}: {exc}") from exc
                log.warning("the cached ONNX file %s cannot be run (%s); exporting it again", self.path, exc)
                continue
            cosine = min_cosine(got, expected)
            if cosine >= MIN_COSINE and prob_diff <= MAX_PROB_DIFF:
                self._record_check(cosine)
                return session, cosine
            if attempt == "fresh":
                raise OnnxUnavailable(
                    f"ONNX Runtime's {self.name} features differ from torch's (cosine {cosine:.6f} < {MIN_COSINE})"
                    if cosine < MIN_COSINE else
                    f"ONNX Runtime's {self.name} class probabilities differ from torch's by {prob_diff:.2g} "
                    f"(> {MAX_PROB_DIFF})"
                )
            log.warning("the cached ONNX file %s gives other features (cosine %.6f); exporting it again",
                        self.path, cosine)
        raise AssertionError("unreachable")

    @property
    def model(self):  # the torch module, for code that inspects it
        return self.source.model

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.session.run(None, {"pixels": x.contiguous().numpy()})[0])

    def embed_batch(self, batch) -> np.ndarray:
        return self.embed_and_classify(batch)[0]

    def embed_and_classify(self, batch) -> tuple[np.ndarray, np.ndarray | None]:
        x = batch.contiguous().numpy() if hasattr(batch, "numpy") else np.ascontiguousarray(batch)
        outputs = self.session.run(None, {"pixels": x.astype(np.float32, copy=False)})
        feats = unit_rows(outputs[0].astype(np.float32, copy=False)).astype(np.float32, copy=False)
        probs = softmax(outputs[1].astype(np.float32, copy=False)) if len(outputs) > 1 else None
        return feats, probs


def torch_version() -> str:
    import torch

    return torch.__version__


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def with_runtime(backbone: Backbone, runtime: str, cache_dir: Path, threads: int | None = None) -> Backbone:
    """`backbone` run by the chosen runtime.

    auto: ONNX Runtime on the CPU for backbones that gain from it, torch otherwise (GPUs, the weightless `tiny`),
    and torch with a warning when ONNX Runtime is unavailable. onnx: ONNX Runtime or BackboneUnavailable.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return backbone
    on_cpu = backbone.device.type == "cpu"
    if runtime == "auto" and not (on_cpu and backbone.onnx_default):
        return backbone
    if not on_cpu:
        raise BackboneUnavailable(f"the onnx runtime runs on the CPU only; device is {backbone.device}")
    try:
        return OnnxBackbone(backbone, cache_dir, threads)
    except OnnxUnavailable as exc:
        if runtime == "onnx":
            raise BackboneUnavailable(f"{exc}; set IMGSEARCH_RUNTIME=torch to use torch") from exc
        log.warning("ONNX Runtime unavailable for %s (%s); embedding with torch", backbone.name, exc)
        return backbone
