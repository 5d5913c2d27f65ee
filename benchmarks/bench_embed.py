"""Feature-extraction throughput: the default pipeline against a naive baseline, in the same run.

Default: the pipeline's batch size (4 on the CPU), decoding in DataLoader worker processes beside the
forward pass, channels-last.
Baseline: batch 1, decoding in the main process, contiguous (NCHW) memory.

    python benchmarks/bench_embed.py --data ../shared/data/caltech101/101_ObjectCategories --n 256
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.ingest.embed import embed_paths  # noqa: E402
from imgsearch.ingest.scan import scan_folder  # noqa: E402
from imgsearch.models.backbones import Backbone, ResNet50Backbone, load_backbone  # noqa: E402
from imgsearch.ui.settings import Settings  # noqa: E402


def naive(backbone: Backbone) -> Backbone:
    """The same network in contiguous memory: what a straightforward loop would run."""
    backbone.model = backbone.model.to(memory_format=torch.contiguous_format)

    def embed_batch(batch):
        with torch.inference_mode():
            feats = backbone._forward(batch.contiguous())
            return torch.nn.functional.normalize(feats, dim=1).numpy()

    backbone.embed_batch = embed_batch
    return backbone


def timed(backbone: Backbone, paths, batch_size: int, workers: int) -> float:
    t = time.perf_counter()
    result = embed_paths(backbone, paths, batch_size=batch_size, num_workers=workers, progress=False)
    assert len(result.ok) == len(paths), result.failures
    return len(paths) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of class sub-folders")
    ap.add_argument("--n", type=int, default=256, help="images per measurement")
    ap.add_argument("--batch-size", type=int, default=Settings().effective_batch_size)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--backbones", default="efficientnet_lite2,resnet50")
    args = ap.parse_args()

    images = scan_folder(args.data).images
    # Spread the sample over classes: image sizes differ a lot between Caltech-101 classes.
    step = max(1, len(images) // args.n)
    paths = [im.path for im in images[::step][: args.n]]
    print(
        f"{len(paths)} images from {args.data}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores, {args.workers} decoder workers"
    )
    print(f"{'backbone':<20}{'pipeline':<44}{'images/s':>10}")
    for name in args.backbones.split(","):
        # ResNet-50 timing needs no ImageNet weights: random weights run the same arithmetic.
        make = (lambda: ResNet50Backbone(pretrained=False)) if name == "resnet50" else (lambda n=name: load_backbone(n))
        bb = make()
        timed(bb, paths[: args.batch_size], args.batch_size, 0)  # warm-up: allocator and oneDNN kernel choice
        fast = timed(bb, paths, args.batch_size, args.workers)
        slow = timed(naive(make()), paths, 1, 0)
        print(f"{name:<20}{f'default (batch {args.batch_size}, {args.workers} workers, NHWC)':<44}{fast:>10.1f}")
        print(f"{'':<20}{'naive (batch 1, no workers, NCHW)':<44}{slow:>10.1f}")
        print(f"{'':<20}{'speed-up':<44}{fast / slow:>9.2f}x")


if __name__ == "__main__":
    main()
