"""Backbone identity: what makes two feature sets comparable (name, dimension, exact weights). No torch here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class IdentityMismatch(ValueError):
    """Something on disk (a store, a model, a feature cache) was made with another backbone."""


@dataclass(frozen=True)
class BackboneId:
    """One backbone's identity. Every feature cache, vector store, model file and run is bound to one."""

    name: str
    dim: int
    weights_sha256: str

    @property
    def tag(self) -> str:
        """`<name>_<sha8>`: the folder name (feature cache, models, indexes) and the Qdrant collection suffix."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", f"{self.name}_{self.weights_sha256[:8]}")

    def as_dict(self) -> dict[str, Any]:
        """As recorded in store metadata (`store.json`, Qdrant collection metadata)."""
        return {"backbone": self.name, "dim": self.dim, "weights_sha256": self.weights_sha256}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BackboneId:
        """Reads `as_dict` output."""
        return cls(str(d["backbone"]), int(d["dim"]), str(d["weights_sha256"]))

    def mismatch(self, stored: BackboneId, where: str) -> str | None:
        """None when `stored` is this identity, else a message naming both."""
        if stored == self:
            return None
        return (
            f"{where} holds vectors of backbone {stored.name!r} (dim {stored.dim}, weights "
            f"{stored.weights_sha256[:12]}) but it was opened for {self.name!r} (dim {self.dim}, "
            f"weights {self.weights_sha256[:12]}). Open the store made for this backbone, or re-ingest."
        )


def backbone_folder(parent: Path, backbone: BackboneId) -> Path:
    """`parent/<tag>`: a backbone's feature cache, models or store folder."""
    return Path(parent) / backbone.tag
