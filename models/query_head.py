"""The SVM's probabilities in numpy alone, for commands that classify a query or two and then exit.

Why: reading the SVM's skops file needs skops and scikit-learn, and importing skops builds its list of trusted
types by importing every scikit-learn estimator (torch included, through scikit-learn's array-API shim): about
4 s of a 5 s cold `imgsearch search` before the search starts (docs/benchmarks.md). The SVM that training fits
(models.classifiers.make_svm) is a Nystroem RBF map, a least-squares SVM and one softmax temperature, that is a
few arrays, so training also writes them to `svm_head.npz` beside `svm.skops`. The head is written only when it
gives the pipeline's own probabilities on the training rows (to HEAD_ATOL), and read only when it names the
same skops file (its checksum) and backbone; otherwise callers read the SVM itself, as before.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEAD_FILE = "svm_head.npz"
HEAD_ATOL = 1e-4  # probabilities, against the pipeline's predict_proba on the rows it was fitted on


@dataclass(frozen=True)
class SvmHead:
    classes_: np.ndarray  # (C,) str
    components: np.ndarray  # (m, d) float32: the Nystroem landmarks
    weights: np.ndarray  # (m, C): the landmark kernel's inverse square root times the SVM's weights, folded
    gamma: float
    intercept: np.ndarray  # (C,), or (2,) for two classes (scores as LeastSquaresSVC's)
    beta: float  # the calibrated inverse temperature

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float32))
        sq = (X * X).sum(1)[:, None] - 2.0 * (X @ self.components.T) + (self.components ** 2).sum(1)[None, :]
        kernel = np.exp(-self.gamma * np.maximum(sq, 0.0).astype(np.float64))
        scores = kernel @ self.weights + self.intercept
        logits = np.stack([-(scores[:, 1] - scores[:, 0]), scores[:, 1] - scores[:, 0]], axis=1) \
            if self.classes_.size == 2 else scores
        z = self.beta * logits
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @classmethod
    def from_pipeline(cls, model: Any) -> SvmHead | None:
        """The head of make_svm's pipeline, or None for any other model (older runs' SVMs)."""
        try:
            rbf, calibrated = model.named_steps["rbf"], model.named_steps["svm"]
            (inner,) = calibrated.calibrated_classifiers_
            svm, (scaler,) = inner.estimator, inner.calibrators
            ny = rbf.nystroem_
            # (kernel @ N') @ coef' = kernel @ (N' @ coef'): an (m, C) matrix instead of the (m, m) N, so the
            # file a search reads is a few MB, not 130 (4,096 landmarks in float64).
            weights = np.asarray(ny.normalization_).T @ np.asarray(svm.coef_, np.float64).T
            return cls(classes_=np.asarray(model.classes_).astype(str), components=np.asarray(ny.components_,
                       np.float32), weights=weights, gamma=float(ny.gamma),
                       intercept=np.asarray(svm.intercept_, np.float64),
                       beta=float(np.asarray(scaler.beta_).reshape(())))
        except (AttributeError, KeyError, TypeError, ValueError):
            return None

    def save(self, path: Path, model_sha256: str, backbone: tuple[str, int, str]) -> None:
        from imgsearch.models.files import atomic_write

        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, classes=self.classes_, components=self.components, weights=self.weights,
                 gamma=self.gamma, intercept=self.intercept, beta=self.beta,
                 model_sha256=model_sha256, backbone=np.array([str(b) for b in backbone]))
        atomic_write(path, tmp.read_bytes())
        tmp.unlink()

    @classmethod
    def load(cls, path: Path, model_sha256: str, backbone: tuple[str, int, str]) -> SvmHead | None:
        """The head at `path` if it belongs to the SVM with this checksum and backbone; None otherwise
        (missing, damaged, or left from another model)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["model_sha256"]) != model_sha256 or list(z["backbone"]) != [str(b) for b in backbone]:
                    return None
                return cls(classes_=z["classes"], components=z["components"], weights=z["weights"],
                           gamma=float(z["gamma"]), intercept=z["intercept"], beta=float(z["beta"]))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
            return None


def write_head(model: Any, X: np.ndarray, path: Path, model_sha256: str, backbone: tuple[str, int, str]) -> bool:
    """Write `model`'s head if it has one that reproduces model.predict_proba on X; True when written."""
    head = SvmHead.from_pipeline(model)
    if head is None:
        return False
    sample = np.asarray(X[:: max(1, len(X) // 512)], dtype=np.float32)
    if not np.allclose(head.predict_proba(sample), model.predict_proba(sample), atol=HEAD_ATOL, rtol=0):
        return False
    head.save(path, model_sha256, backbone)
    return True


def top_k(proba: np.ndarray, classes: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
    """For each row of (n, C) probabilities, the k most probable (label, probability), most probable first;
    ties keep class order (a stable sort), so the output is deterministic."""
    k = min(k, len(classes))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return [[(str(classes[j]), float(row[j])) for j in idx] for row, idx in zip(proba, order, strict=True)]
