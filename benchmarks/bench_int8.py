"""int8 embedding: is ONNX Runtime's static int8 quantisation of a backbone worth offering on this CPU?

    python benchmarks/bench_int8.py --folder <images> [--backbone efficientnet_lite2] [--calib 64] [--eval 256]

Exports the backbone to ONNX (fp32, as the CPU runtime does), quantises a copy statically with ONNX Runtime
(QDQ, per-channel int8 weights, uint8 activations, calibrated on --calib images of the folder; MinMax and
Percentile calibration), then, on --eval other images of the folder (seeded pick): the forward rate of each model
at the pipeline's batch size, interleaved rounds in one process (the best round of each), and how far the int8
features are from the fp32 ones (cosine per image: min and 1st percentile; the same top-10 neighbours among the
eval images). Not collected by pytest. Run it alone.

    python benchmarks/bench_int8.py --folder <images> --data-dir <data dir> [--eval 256]

With --data-dir: no quantising here; the data dir's own fp32 export and the int8 file that
IMGSEARCH_EMBED_PRECISION=int8 made from it (models/onnx_int8.py) are timed and compared the same way.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.ingest.decode import IMAGE_EXTENSIONS, load_rgb  # noqa: E402
from imgsearch.models.backbones import load_backbone  # noqa: E402
from imgsearch.models.onnx_backbone import OnnxBackbone, ort_session, unit_rows  # noqa: E402

BATCH = 32


def pick(folder: Path, n: int, seed: int, leave_out: frozenset[Path] = frozenset()) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p not in leave_out)
    rng = np.random.default_rng(seed)
    return [files[i] for i in rng.choice(len(files), min(n, len(files)), replace=False)]


def pixels(backbone, paths: list[Path]) -> np.ndarray:
    import torch

    side = backbone.decode_side
    return torch.stack([backbone.preprocess(load_rgb(p, min_side=side)) for p in paths]).numpy()


class Reader:
    """The calibration images, one batch at a time, as ONNX Runtime's CalibrationDataReader expects."""

    def __init__(self, x: np.ndarray):
        self.batches = iter([{"pixels": x[i : i + 8]} for i in range(0, len(x), 8)])

    def get_next(self):
        return next(self.batches, None)


def quantise(fp32: Path, out: Path, calib: np.ndarray, method: str, variant: str) -> None:
    """variant: `all` (every op ONNX Runtime can quantise), `conv` (convolutions only: the residual Adds and the
    pooling stay float), `conv-ends` (convolutions but the first and the last, which see the raw pixels and
    make the pooled features, stay float)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepped = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=True)
    import onnx

    convs = [n.name for n in onnx.load(str(prepped)).graph.node if n.op_type == "Conv"]
    ops = None if variant == "all" else ["Conv"]
    exclude = [convs[0], convs[-1]] if variant == "conv-ends" else []
    quantize_static(str(prepped), str(out), Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    calibrate_method=getattr(CalibrationMethod, method), op_types_to_quantize=ops,
                    nodes_to_exclude=exclude,
                    extra_options={"ActivationSymmetric": False})


def rate(session, x: np.ndarray, batch: int = BATCH) -> float:
    t = time.perf_counter()
    for i in range(0, len(x), batch):
        session.run(None, {"pixels": x[i : i + batch]})
    return len(x) / (time.perf_counter() - t)


def features(session, x: np.ndarray) -> np.ndarray:
    return unit_rows(np.concatenate([session.run(None, {"pixels": x[i : i + BATCH]})[0]
                                 for i in range(0, len(x), BATCH)]))


def precision_at_10(top: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out P@10 among the eval images, relevance = same parent folder (class)."""
    return float((labels[top] == labels[:, None]).mean())


def top10(f: np.ndarray) -> np.ndarray:
    sims = f @ f.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :10]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--backbone", default="efficientnet_lite2")
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--eval", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=["MinMax", "Percentile"])
    ap.add_argument("--variants", nargs="+", default=["all"], choices=["all", "conv", "conv-ends"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batches", type=int, nargs="+", default=[BATCH], help="batch sizes timed (the CPU pipeline's: 4)")
    ap.add_argument("--data-dir", type=Path, help="time this data dir's fp32 export and its int8 file")
    args = ap.parse_args()
    print("command: python " + " ".join(sys.argv))

    source = load_backbone(args.backbone, allow_download=False)
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        onnx = OnnxBackbone(source, args.data_dir / "onnx" if args.data_dir else Path(tmp))
        if args.data_dir:
            from imgsearch.models.onnx_int8 import load_int8

            args.calib, args.methods = 0, []
            int8 = load_int8(onnx, None)
            print(f"the data dir's int8 file {int8.path.name}: {int8.record['calibration']}, agreement on its "
                  f"held-out images {int8.record['agreement']}")
        used: frozenset[Path] = frozenset()
        if args.data_dir:  # the images the int8 file was calibrated and checked on are left out
            from imgsearch.models.onnx_int8 import sample_images

            cal = int8.record["calibration"]
            used = frozenset(sample_images(args.folder, cal["images"] + cal["held_out"], cal["seed"]))
        paths = pick(args.folder, args.calib + args.eval, args.seed, used)
        calib = pixels(source, paths[: args.calib]) if args.calib else None
        evaluation = pixels(source, paths[args.calib :])
        sessions = {"fp32": onnx.session}
        if args.data_dir:
            sessions["int8 (data dir)"] = int8.session
        for method, variant in ((m, v) for m in args.methods for v in args.variants):
            out = Path(tmp) / f"int8-{method}-{variant}.onnx"
            t = time.perf_counter()
            quantise(onnx.path, out, calib, method, variant)
            print(f"quantised ({method}, {variant}) in {time.perf_counter() - t:.1f} s: "
                  f"{out.stat().st_size / 2**20:.1f} MiB (fp32 {onnx.path.stat().st_size / 2**20:.1f} MiB)")
            sessions[f"int8 {method} {variant}"] = ort_session(out, onnx.threads)
        timed = evaluation[:256]
        rates = {b: {name: 0.0 for name in sessions} for b in args.batches}
        for _ in range(args.rounds):  # interleaved, so a busy moment slows every model alike
            for b in args.batches:
                for name, s in sessions.items():
                    rates[b][name] = max(rates[b][name], rate(s, timed, b))
        for b in args.batches:
            print(f"batch {b}: " + ", ".join(f"{name} {r:.1f} img/s ({r / rates[b]['fp32']:.2f}x)"
                                            for name, r in rates[b].items()))
        best = rates[args.batches[-1]]
        labels = np.array([p.parent.name for p in paths[args.calib :]])
        reference = features(sessions["fp32"], evaluation)
        ref_top = top10(reference)
        print(f"\n{len(evaluation)} eval images ({len(timed)} timed, batch {args.batches[-1]}, {onnx.threads} threads, "
              f"best of {args.rounds} rounds); P@10 leave-one-out among the eval images, same folder = relevant")
        print("| model | img/s | vs fp32 | min cosine to fp32 | 1st pct cosine | same top-10 set | P@10 |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, s in sessions.items():
            f = features(s, evaluation)
            cos = (f * reference).sum(axis=1)
            top = top10(f)
            same = np.mean([set(a) == set(b) for a, b in zip(top, ref_top, strict=True)])
            print(f"| {name} | {best[name]:.1f} | {best[name] / best['fp32']:.2f}x | {cos.min():.4f} | "
                  f"{np.percentile(cos, 1):.4f} | {same:.2%} | {precision_at_10(top, labels):.4f} |")


if __name__ == "__main__":
    main()
