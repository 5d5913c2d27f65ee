"""Search by words on Caltech-101: the tags of the backbone's own ImageNet head, measured against the folders.

Caltech-101 classes that clearly name an ImageNet-1k class or a broader WordNet term are mapped to it in
benchmarks/data/caltech101_imagenet.json (the others are left out, and counted). For each mapped class:
- the query is the class's common name (the mapping's "query"), resolved by search/text_query.py as a user's
  words would be;
- P@10 and AP@50 of the images it ranks (by tag probability, search/text_query.py), a hit being an image of that
  class; the collection is all 8,677 images (BACKGROUND_Google left out);
- the tag threshold's precision and recall: an image of a mapped class "has" the class when one of its kept tags
  lies under the mapped term; precision over the images tagged with the term.
Text search latency: p95 over the queries, on the collection's tags repeated to --scale images.

The class probabilities come from one pass of `ingest.embed.embed_paths` (the ingest's own forward pass, which
gives features and probabilities together), kept in --work so that the evaluation can be rerun without it.

    nice python benchmarks/bench_text_search.py --data ../shared/data/caltech101/101_ObjectCategories \
        --work /tmp/tags_c101
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.ingest.embed import embed_paths  # noqa: E402
from imgsearch.ingest.scan import scan_folder  # noqa: E402
from imgsearch.models.backbones import load_backbone  # noqa: E402
from imgsearch.models.onnx_backbone import with_runtime  # noqa: E402
from imgsearch.models.tags import TagPolicy, imagenet_vocabulary  # noqa: E402
from imgsearch.search.text_query import TagIndex, parse_query  # noqa: E402

MAPPING = Path(__file__).with_name("data") / "caltech101_imagenet.json"
THRESHOLDS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


def class_probabilities(data: Path, work: Path, backbone: str, threads: int) -> tuple[list[str], list[str], np.ndarray]:
    """(paths, labels, probs (n, 1000) float16), computed once and kept in work/probs-{backbone}.npz."""
    cached = work / f"probs-{backbone}.npz"
    if cached.exists():
        z = np.load(cached)
        return z["paths"].tolist(), z["labels"].tolist(), z["probs"]
    images = scan_folder(data).images
    bb = with_runtime(load_backbone(backbone), "onnx", work / "onnx", threads)
    t = time.perf_counter()
    res = embed_paths(bb, [im.path for im in images], batch_size=16, num_workers=1, keep_probs=True)
    print(f"{len(res.ok)} images embedded and classified in {time.perf_counter() - t:.0f} s "
          f"({len(res.failures)} failed)")
    paths = [str(images[i].path) for i in res.ok]
    labels = [images[i].label for i in res.ok]
    probs = res.probs.astype(np.float16)
    np.savez(cached, paths=np.array(paths), labels=np.array(labels), probs=probs)
    return paths, labels, probs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="Caltech-101's 101_ObjectCategories")
    ap.add_argument("--work", type=Path, default=Path("/tmp/tags_c101"))
    ap.add_argument("--backbone", default="efficientnet_lite2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--probs-only", action="store_true", help="compute the class probabilities and stop")
    ap.add_argument("--scale", type=int, default=100_000, help="images for the latency measurement")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    paths, labels, probs = class_probabilities(args.data, args.work, args.backbone, args.threads)
    if args.probs_only:
        return
    evaluate(labels, probs.astype(np.float32), args.scale)


def tag_rows(tags: list[list[tuple[str, float]]], offset: int = 0) -> tuple[list[int], list[str], list[float]]:
    rows = [(offset + i, t, p) for i, kept in enumerate(tags) for t, p in kept]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def average_precision(relevant: np.ndarray, n_relevant: int, depth: int) -> float:
    rel = relevant[:depth].astype(float)
    if n_relevant == 0:
        return 0.0
    precision_at = np.cumsum(rel) / np.arange(1, len(rel) + 1)
    return float((precision_at * rel).sum() / min(n_relevant, depth))


def evaluate(labels: list[str], probs: np.ndarray, scale: int) -> None:
    voc = imagenet_vocabulary()
    mapped: dict[str, str] = json.loads(MAPPING.read_text())["mapped"]
    queries = sorted(set(mapped.values()))
    parsed = {q: parse_query(q, voc) for q in queries}
    label_query = np.array([mapped.get(lab, "") for lab in labels])
    print(f"{len(labels)} images, {len(mapped)} of Caltech-101's 101 classes mapped ({len(queries)} queries; "
          f"{int((label_query != '').sum())} images of mapped classes)")
    print("threshold | tags/image | images with a tag | tag precision | tag recall | mean P@10 | mean AP@50")
    results = {}
    for t in THRESHOLDS:
        tags = TagPolicy(min_prob=t).select(probs, voc.classes)
        index = TagIndex(*tag_rows(tags), vocabulary=voc)
        p10, ap50, precision, recall = [], [], [], []
        for q in queries:
            relevant_images = label_query == q
            hits = index.search(parsed[q], k=50)
            rel = np.array([relevant_images[h.id] for h in hits], dtype=bool)
            p10.append(rel[:10].sum() / 10)
            ap50.append(average_precision(rel, int(relevant_images.sum()), 50))
            classes = {voc.classes[i] for i in parsed[q].concepts[0].classes}
            has = np.array([any(name in classes for name, _ in kept) for kept in tags])
            recall.append(has[relevant_images].mean())
            precision.append(has[relevant_images].sum() / has.sum() if has.sum() else 0.0)
        n_tags = np.array([len(kept) for kept in tags])
        results[t] = (np.mean(p10), np.mean(ap50), p10, index, tags)
        print(f"{t:9.2f} | {n_tags.mean():10.2f} | {(n_tags > 0).mean():17.1%} | {np.mean(precision):13.3f} | "
              f"{np.mean(recall):10.3f} | {np.mean(p10):9.3f} | {np.mean(ap50):10.3f}")
    default = TagPolicy().min_prob
    mean_p10, mean_ap50, p10, index, tags = results[default]
    worst = sorted(zip(p10, queries, strict=True))[:8]
    print(f"at the default threshold {default}: mean P@10 {mean_p10:.3f}, mean AP@50 {mean_ap50:.3f}; lowest P@10: "
          + ", ".join(f"{q} {p:.1f}" for p, q in worst))
    # Latency: the collection's tags repeated to `scale` images.
    reps = -(-scale // len(tags))
    ids, names, ps = [], [], []
    for r in range(reps):
        a, b, c = tag_rows(tags, offset=r * len(tags))
        ids += a
        names += b
        ps += c
    t0 = time.perf_counter()
    big = TagIndex(ids, names, ps, vocabulary=voc)
    build_s = time.perf_counter() - t0
    times = []
    for _ in range(5):
        for q in [*queries, "dog", "bird", "dog umbrella"]:
            t0 = time.perf_counter()
            big.search(q, k=10)  # parsing included
            times.append((time.perf_counter() - t0) * 1000)
    print(f"latency at {reps * len(tags):,} images ({len(big):,} with tags, {big.matrix.nnz:,} tags; index built "
          f"in {build_s:.2f} s): text search "
          f"p50 {np.percentile(times, 50):.2f} ms, p95 {np.percentile(times, 95):.2f} ms over {len(times)} queries")


if __name__ == "__main__":
    main()
