"""Feature-extraction throughput: torch against ONNX Runtime, in the same run, on real images.

For each backbone:
- forward pass alone (images decoded and preprocessed once, up front), torch (channels-last) and ONNX Runtime,
  at each batch size in --batch-sizes;
- the pipeline (decoder worker processes beside the forward pass, `embed_paths`) at the pipeline's batch size,
  with each runtime;
- the largest per-image difference between the two runtimes' features (1 - cosine), on the same real images;
- for ResNet-50 (random weights: its ImageNet weights cannot be downloaded here, and the arithmetic is the
  same), the FLOPs per image counted by torch against this CPU's SGEMM rate measured in the same run.

    python benchmarks/bench_embed.py --data ../shared/data/caltech101/101_ObjectCategories --n 256

On a GPU (`--device cuda --batch-sizes 64,128,256`): torch in fp32, bf16 and fp16, each checked against fp32
(cosine >= 0.999, else refused), decoding alone with the pipeline's workers, and the pipeline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.ingest.decode import load_rgb  # noqa: E402
from imgsearch.ingest.embed import embed_paths  # noqa: E402
from imgsearch.ingest.scan import scan_folder  # noqa: E402
from imgsearch.models.backbones import Backbone, ResNet50Backbone, load_backbone  # noqa: E402
from imgsearch.models.onnx_backbone import OnnxBackbone, min_cosine, physical_cores, with_runtime  # noqa: E402
from imgsearch.ui.services.context import default_workers  # noqa: E402
from imgsearch.ui.services.settings import Settings  # noqa: E402


def forward_rate(bb: Backbone, x: torch.Tensor, batch: int, repeats: int = 2) -> float:
    """Images/s of `embed_batch` alone over all of `x`, best of `repeats` (after one warm-up batch)."""
    bb.embed_batch(x[:batch])
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            bb.embed_batch(x[i : i + batch])
        best = max(best, len(x) / (time.perf_counter() - t))
    return best


def pipeline_rate(bb: Backbone, paths, batch: int, workers: int) -> float:
    t = time.perf_counter()
    result = embed_paths(bb, paths, batch_size=batch, num_workers=workers, progress=False)
    assert len(result.ok) == len(paths), result.failures
    return len(paths) / (time.perf_counter() - t)


def decode_rate(bb: Backbone, paths, workers: int) -> float:
    """Images/s of reading, decoding and preprocessing alone, in `workers` DataLoader processes (no forward)."""
    from torch.utils.data import DataLoader

    from imgsearch.ingest.embed import _collate, _DecodeDataset

    loader = DataLoader(_DecodeDataset(paths, bb.preprocess, 89_478_485), batch_size=16, num_workers=workers,
                        collate_fn=_collate)
    t = time.perf_counter()
    n = sum(len(ok) for ok, _, _ in loader)
    return n / (time.perf_counter() - t)


def accelerator(args, paths, sizes) -> None:
    """--device cuda...: torch in fp32, bf16 and fp16 (each checked against fp32), decoding alone, the pipeline."""
    from imgsearch.models.backbones import BackboneUnavailable
    from imgsearch.models.precision import with_precision

    settings = Settings(device=args.device)
    batch, workers = settings.effective_batch_size, default_workers(settings)
    gpu = f" ({torch.cuda.get_device_name(args.device)})" if args.device.startswith("cuda") else ""
    print(f"device {args.device}{gpu}; pipeline: batch {batch}, {workers} decoder workers")
    for name in args.backbones.split(","):
        def make(name=name):
            if name == "resnet50":
                return ResNet50Backbone(pretrained=False, device=args.device)
            return load_backbone(name, device=args.device)

        fp32 = make()
        x = torch.stack([fp32.preprocess(load_rgb(p.read_bytes())) for p in paths])
        x = x.pin_memory() if args.device.startswith("cuda") else x
        ref = fp32.embed_batch(x)
        print(f"\n{name}: decoding + preprocessing alone, {workers} workers: {decode_rate(fp32, paths, workers):.0f} "
              "img/s")
        for precision in ("fp32", "bf16", "fp16"):
            try:
                bb = fp32 if precision == "fp32" else with_precision(make(), precision)
            except BackboneUnavailable as exc:
                print(f"  {precision}: refused ({exc})")
                continue
            rates = ", ".join(f"batch {b}: {forward_rate(bb, x, b):.0f}" for b in sizes)
            print(f"  {precision}: forward img/s {rates}; pipeline {pipeline_rate(bb, paths, batch, workers):.0f} "
                  f"img/s; 1 - cosine to fp32 at most {1 - min_cosine(bb.embed_batch(x), ref):.1e}")


def sgemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9


def conv_gemm_gflops(c: int = 1024, side: int = 56, batch: int = 8, repeats: int = 5) -> float:
    """The same arithmetic as a GEMM, run as a 1x1 convolution: oneDNN's kernels, which the backbones use."""
    conv = torch.nn.Conv2d(c, c, 1, bias=False).eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, c, side, side).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        conv(x)
        t = time.perf_counter()
        for _ in range(repeats):
            conv(x)
    return 2 * batch * c * c * side * side * repeats / (time.perf_counter() - t) / 1e9


def flops_per_image(bb: Backbone) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, bb.input_size, bb.input_size)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        bb._forward(x)
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of class sub-folders")
    ap.add_argument("--n", type=int, default=256, help="images per measurement")
    ap.add_argument("--batch-sizes", default="1,4,8,32", help="forward-pass batch sizes to time")
    ap.add_argument("--backbones", default="efficientnet_lite2,efficientnet_lite0,resnet50")
    ap.add_argument("--device", default="cpu", help="cuda, cuda:1 ...: time torch's precisions on that GPU instead")
    ap.add_argument("--precisions", action="store_true", help="time torch's precisions on --device (also the CPU)")
    args = ap.parse_args()

    images = scan_folder(args.data).images
    step = max(1, len(images) // args.n)  # spread over classes: image sizes differ a lot between them
    paths = [im.path for im in images[::step][: args.n]]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.device != "cpu" or args.precisions:
        return accelerator(args, paths, sizes)
    settings = Settings()
    batch, workers = settings.effective_batch_size, default_workers(settings)
    print(f"{len(paths)} images from {args.data}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{physical_cores()} physical cores; pipeline: batch {batch}, {workers} decoder worker(s)")
    onnx_dir = Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    for name in args.backbones.split(","):
        # ResNet-50 timing needs no ImageNet weights: random weights run the same arithmetic.
        tb = ResNet50Backbone(pretrained=False) if name == "resnet50" else load_backbone(name)
        t = time.perf_counter()
        ob = OnnxBackbone(tb, onnx_dir)
        export_s = time.perf_counter() - t
        chosen = with_runtime(tb, "auto", onnx_dir)
        x = torch.stack([tb.preprocess(load_rgb(p.read_bytes())) for p in paths])
        diff = 1 - min_cosine(tb.embed_batch(x), ob.embed_batch(x))
        print(f"\n{name}: exported and checked in {export_s:.1f} s; largest per-image 1 - cosine between the "
              f"runtimes on these {len(paths)} images: {diff:.2e}; the pipeline's default runtime: {chosen.runtime}")
        print(f"  {'forward pass alone':<26}{'torch img/s':>12}{'onnx img/s':>12}{'ratio':>8}")
        for b in sizes:
            rt, ro = forward_rate(tb, x, b), forward_rate(ob, x, b)
            print(f"  {f'batch {b}':<26}{rt:>12.1f}{ro:>12.1f}{ro / rt:>7.2f}x")
        rt, ro = pipeline_rate(tb, paths, batch, workers), pipeline_rate(ob, paths, batch, workers)
        print(f"  {f'pipeline (batch {batch})':<26}{rt:>12.1f}{ro:>12.1f}{ro / rt:>7.2f}x")
        print(f"  decoding + preprocessing alone, {workers} worker(s): {decode_rate(tb, paths, workers):.0f} img/s")
        if name == "resnet50":
            gflop = flops_per_image(tb) / 1e9
            mm, conv = sgemm_gflops(), conv_gemm_gflops()
            best_t = max(forward_rate(tb, x, b) for b in sizes)
            best_o = max(forward_rate(ob, x, b) for b in sizes)
            print(f"  arithmetic: {gflop:.2f} GFLOP per image (torch's FLOP counter). GEMM here: torch.mm {mm:.0f} "
                  f"GFLOP/s (bound {mm / gflop:.1f} img/s), the same GEMM as a oneDNN 1x1 convolution {conv:.0f} "
                  f"GFLOP/s (bound {conv / gflop:.1f} img/s). Measured: torch {best_t:.1f} img/s = "
                  f"{best_t * gflop:.0f} GFLOP/s, ONNX Runtime {best_o:.1f} img/s = {best_o * gflop:.0f} GFLOP/s")
        del tb, ob, chosen


if __name__ == "__main__":
    main()
