"""Photo-library benchmark: phone-sized photos with EXIF, ingested with and without decoding at the network's size.

Builds a seeded set from any folder of class sub-folders (Caltech-101 here): N pictures picked with the seed, each
cropped to 4:3, upscaled to 4032x3024 (12 MP) with sensor-like noise and saved as a quality-92 JPEG, plus HEIC
copies of the first few; every file gets an EXIF date, camera, GPS position and (one in four, as a phone held
upright writes) orientation 6. The same seed rebuilds the same pictures. The originals are copied beside them,
so the small-image rate is measured in the same run.

Then, each in a fresh data directory and process (the ONNX export made once, copied in):
  small originals; 12 MP JPEG decoded at full resolution (the old path, `IngestOptions.full_decode`); 12 MP JPEG
  decoded at the backbone's size; HEIC. Rates are images / (embed + store writes), as the CLI reports them, and
  images / the ingest's wall time; peak RSS of the ingesting process and of its decoder processes.
Then feature agreement: every 12 MP JPEG embedded from a full decode and from the reduced one (cosine, top-10
neighbours among the set), the same over a seeded sample of the source folder's own images, and whether the
dates and orientations written came back.

    python benchmarks/bench_photos.py --source ../shared/data/caltech101/101_ObjectCategories --out /tmp/photoset
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import psutil
from PIL import Image, TiffImagePlugin

SIZE = (4032, 3024)  # a phone's 12 MP, landscape
NOISE_SIGMA = 2.5  # grey levels: the grain of a phone photo in daylight
JPEG_QUALITY = 92
CAMERAS = [("Apple", "iPhone 12"), ("Apple", "iPhone 14 Pro"), ("samsung", "SM-G991B"), ("Google", "Pixel 7"),
           ("Canon", "Canon EOS 80D"), ("SONY", "ILCE-7M3")]
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATE_ORIGINAL, ORIENTATION, MAKE, MODEL, DATETIME = 0x9003, 0x0112, 0x010F, 0x0110, 0x0132
SETS = ("small", "jpeg", "heic")


def _sources(root: Path) -> list[Path]:
    return sorted(p for d in sorted(root.iterdir()) if d.is_dir() and d.name != "BACKGROUND_Google"
                  for p in sorted(d.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _dms(value: float) -> tuple:
    value = abs(value)
    d, m = int(value), int(value * 60) % 60
    return (TiffImagePlugin.IFDRational(d), TiffImagePlugin.IFDRational(m),
            TiffImagePlugin.IFDRational(round((value * 3600) % 60 * 100), 100))


def _exif(meta: dict) -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE], exif[MODEL] = meta["camera"]
    exif[ORIENTATION] = meta["orientation"]
    exif[DATETIME] = meta["date"]
    exif.get_ifd(EXIF_IFD)[DATE_ORIGINAL] = meta["date"]
    lat, lon = meta["gps"]
    exif.get_ifd(GPS_IFD).update({1: "N" if lat >= 0 else "S", 2: _dms(lat), 3: "E" if lon >= 0 else "W",
                                  4: _dms(lon)})
    return exif


def _phone_photo(src: Path, rng: np.random.Generator) -> Image.Image:
    """`src` cropped to 4:3 (3:4 if it is portrait), upscaled to 12 MP, with seeded sensor noise."""
    img = Image.open(src).convert("RGB")
    w, h = img.size
    portrait = h > w
    ratio = 3 / 4 if portrait else 4 / 3
    cw, ch = (w, round(w / ratio)) if w / h < ratio else (round(h * ratio), h)
    img = img.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))
    img = img.resize(SIZE[::-1] if portrait else SIZE, Image.Resampling.BICUBIC)
    a = np.asarray(img, dtype=np.int16)
    a += rng.normal(0, NOISE_SIGMA, a.shape).round().astype(np.int16)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def generate(source: Path, out: Path, n: int, n_heic: int, seed: int) -> dict:
    """The set in `out` (made again only when its manifest is for other parameters)."""
    wanted = {"source": str(source.resolve()), "n": n, "heic": n_heic, "seed": seed, "size": SIZE,
              "noise": NOISE_SIGMA, "quality": JPEG_QUALITY}
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if {k: manifest.get(k) for k in wanted} == json.loads(json.dumps(wanted)):
            return manifest
    import pillow_heif

    pillow_heif.register_heif_opener()
    shutil.rmtree(out, ignore_errors=True)
    rng = np.random.default_rng(seed)
    pool = _sources(source)
    picks = [pool[i] for i in sorted(rng.choice(len(pool), size=n, replace=False))]
    files = []
    t = time.perf_counter()
    for k, src in enumerate(picks):
        meta = {"label": src.parent.name, "name": f"IMG_{k:04d}",
                "date": (datetime(2019, 1, 1) + timedelta(seconds=int(rng.integers(0, 4 * 365 * 86400))))
                .strftime("%Y:%m:%d %H:%M:%S"),
                "camera": list(CAMERAS[int(rng.integers(len(CAMERAS)))]),
                "gps": [round(float(rng.uniform(-60, 70)), 6), round(float(rng.uniform(-180, 180)), 6)],
                "orientation": 6 if k % 4 == 3 else 1}
        upright = _phone_photo(src, np.random.default_rng([seed, k]))
        meta["upright_size"] = list(upright.size)
        # Orientation 6: the sensor's pixels are stored turned a quarter left, and the viewer turns them back.
        stored = upright.transpose(Image.Transpose.ROTATE_90) if meta["orientation"] == 6 else upright
        exif = _exif(meta)
        for kind in SETS:
            (out / kind / meta["label"]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / "small" / meta["label"] / f"{meta['name']}{src.suffix.lower()}")
        stored.save(out / "jpeg" / meta["label"] / f"{meta['name']}.jpg", "JPEG", quality=JPEG_QUALITY, exif=exif)
        if k < n_heic:
            # x265's fastest preset: a phone's encoder is hardware; this only has to make the file quickly.
            stored.save(out / "heic" / meta["label"] / f"{meta['name']}.heic", "HEIF", quality=80,
                        exif=exif.tobytes(), enc_params={"preset": "ultrafast"})
        files.append(meta)
        if sys.stdout.isatty():
            print(f"\r  generated {k + 1}/{n} ({time.perf_counter() - t:.0f} s)", end="", flush=True)
    print()
    manifest = {**wanted, "files": files}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def _settings(data_dir: Path, backbone: str):
    from imgsearch.ui.services.settings import Settings

    return Settings(data_dir=data_dir, backbone=backbone, qdrant_url=None, runtime="auto")


class _PeakRss(threading.Thread):
    """Samples the resident memory of this process and of its decoder processes while the ingest runs."""

    def __init__(self, every_s: float = 0.05):
        super().__init__(daemon=True)
        self.every_s, self.main, self.workers, self.stopped = every_s, 0, 0, threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.stopped.wait(self.every_s):
            try:
                self.main = max(self.main, me.memory_info().rss)
                for child in me.children(recursive=True):
                    self.workers = max(self.workers, child.memory_info().rss)
            except psutil.Error:
                continue


def _child_ingest(folder: Path, data_dir: Path, backbone: str, full_decode: bool) -> None:
    from imgsearch.ingest.pipeline import ingest_folder
    from imgsearch.ui.services.context import Context

    ctx = Context(_settings(data_dir, backbone), role="ingest")
    peak = _PeakRss()
    try:
        bb = ctx.backbone
        peak.start()
        t = time.perf_counter()
        report = ingest_folder(folder, ctx.Session, bb, ctx.cache, ctx.stores, None,
                               replace(ctx.ingest_options(), full_decode=full_decode), progress=False)
        wall = time.perf_counter() - t
    finally:
        peak.stopped.set()
        ctx.close()
    print(json.dumps({"n": report.n_indexed, "skipped": report.skipped, "wall_s": wall, **report.timings,
                      "rss_mib": peak.main / 2**20, "workers_rss_mib": peak.workers / 2**20}))


def _features(bb, paths: list[Path], side: int | None) -> np.ndarray:
    from imgsearch.ingest.decode import load_rgb

    return np.concatenate([bb.embed_images([load_rgb(p, min_side=side)]) for p in paths])


def _top10(x: np.ndarray) -> list[set[int]]:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return [set(np.argsort(-row, kind="stable")[:10].tolist()) for row in sims]


def _child_agree(out: Path, source: Path, data_dir: Path, backbone: str, n_source: int, seed: int) -> None:
    from imgsearch.ingest.decode import decode, decode_side
    from imgsearch.ui.services.context import Context

    manifest = json.loads((out / "manifest.json").read_text())
    ctx = Context(_settings(data_dir, backbone), role="search")
    bb, result = ctx.backbone, {}
    side = decode_side(bb)
    jpegs = sorted((out / "jpeg").rglob("*.jpg"))
    full, reduced = _features(bb, jpegs, None), _features(bb, jpegs, side)
    cos = (full * reduced).sum(1)
    top_full, top_reduced = _top10(full), _top10(reduced)
    same = [a == b for a, b in zip(top_full, top_reduced, strict=True)]
    # How close the 10th and 11th neighbours were (full decode) where the top 10 differ: a swap of a near-tie.
    sims = full @ full.T
    np.fill_diagonal(sims, -np.inf)
    ranked = -np.sort(-sims, axis=1)
    gaps = [float(ranked[q, 9] - ranked[q, 10]) for q in range(len(same)) if not same[q]]
    result["jpeg"] = {"n": len(jpegs), "side": side, "min_cos": float(cos.min()), "mean_cos": float(cos.mean()),
                      "same_top10": float(np.mean(same)),
                      "overlap": float(np.mean([len(a & b) / 10 for a, b in zip(top_full, top_reduced, strict=True)])),
                      "max_tie_gap": max(gaps, default=0.0)}
    pool = _sources(source)
    picks = [pool[i] for i in sorted(np.random.default_rng(seed + 1).choice(len(pool), size=n_source,
                                                                              replace=False))]
    changed = [p for p in picks if decode(p, min_side=side).image.size != decode(p).image.size]
    if changed:
        cos_src = (_features(bb, changed, None) * _features(bb, changed, side)).sum(1)
        result["source"] = {"n": len(picks), "changed": len(changed), "min_cos": float(cos_src.min())}
    else:
        result["source"] = {"n": len(picks), "changed": 0, "min_cos": 1.0}
    by_name = {m["name"]: m for m in manifest["files"]}
    for kind in ("jpeg", "heic"):
        paths = sorted(p for p in (out / kind).rglob("*") if p.is_file())
        dates = upright = 0
        for p in paths:
            meta, d = by_name[p.stem], decode(p, min_side=side)
            dates += d.exif.get_ifd(EXIF_IFD).get(DATE_ORIGINAL) == meta["date"]
            w, h = d.image.size
            upright += (w > h) == (meta["upright_size"][0] > meta["upright_size"][1])
        result[f"{kind}_metadata"] = {"n": len(paths), "dates": dates, "upright": upright}
    ctx.close()
    print(json.dumps(result))


def _child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, help="folder of class sub-folders to build the set from")
    ap.add_argument("--out", type=Path, help="where the set is (re)built")
    ap.add_argument("--n", type=int, default=60, help="12 MP JPEGs")
    ap.add_argument("--heic", type=int, default=12, help="HEIC copies of the first of them (x265 is slow to write)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backbone", default="efficientnet_lite2")
    ap.add_argument("--source-sample", type=int, default=300, help="source images checked for decode changes")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of ingests; each configuration keeps its fastest")
    ap.add_argument("--child", choices=("ingest", "agree"), help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--full-decode", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "ingest":
        return _child_ingest(args.folder, args.data_dir, args.backbone, args.full_decode)
    if args.child == "agree":
        return _child_agree(args.out, args.source, args.data_dir, args.backbone, args.source_sample, args.seed)
    if args.source is None or args.out is None:
        ap.error("--source and --out are required")
    t = time.perf_counter()
    generate(args.source, args.out, args.n, args.heic, args.seed)
    print(f"set: {args.out} ({args.n} x 12 MP JPEG, {args.heic} HEIC, seed {args.seed}; "
          f"{time.perf_counter() - t:.0f} s); backbone {args.backbone}, {os.cpu_count()} cores")
    warm = Path(tempfile.mkdtemp(prefix="bench-photos-"))
    try:
        agree = _child(["--child", "agree", "--out", str(args.out), "--source", str(args.source), "--data-dir",
                        str(warm), "--backbone", args.backbone, "--source-sample", str(args.source_sample),
                        "--seed", str(args.seed)])
        configs = (("small originals", "small", False), ("12 MP JPEG, full decode (before)", "jpeg", True),
                   ("12 MP JPEG, reduced decode (after)", "jpeg", False), ("12 MP HEIC", "heic", False))
        best: dict[str, tuple] = {}
        # Rounds interleave the configurations, so a burst of load elsewhere does not fall on one of them only;
        # each keeps its fastest round.
        for _ in range(args.repeat):
            for label, kind, full in configs:
                data_dir = Path(tempfile.mkdtemp(prefix="bench-photos-"))
                shutil.copytree(warm / "onnx", data_dir / "onnx")  # the export once, not in every timing
                r = _child(["--child", "ingest", "--folder", str(args.out / kind), "--data-dir", str(data_dir),
                            "--backbone", args.backbone] + (["--full-decode"] if full else []))
                shutil.rmtree(data_dir, ignore_errors=True)
                row = (label, r["n"], r["n"] / (r["embed_s"] + r["store_s"]), r["n"] / r["wall_s"], r["rss_mib"],
                       r["workers_rss_mib"])
                if label not in best or row[2] > best[label][2]:
                    best[label] = row
                if r["skipped"]:
                    print(f"  {label}: skipped {r['skipped']}")
        rows = [best[label] for label, _, _ in configs]
    finally:
        shutil.rmtree(warm, ignore_errors=True)
    small_rate = rows[0][2]
    print("\n| set | images | img/s (embed + store) | vs small | img/s (ingest wall) | peak RSS main / decoder |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, n, rate, wall_rate, rss, wrss in rows:
        print(f"| {label} | {n} | {rate:.1f} | {rate / small_rate:.0%} | {wall_rate:.1f} | "
              f"{rss:.0f} / {wrss:.0f} MiB |")
    j, s = agree["jpeg"], agree["source"]
    print(f"\n12 MP JPEG decoded with shorter side >= {j['side']} px vs full decode: min cosine {j['min_cos']:.4f} "
          f"(mean {j['mean_cos']:.4f}); same top-10 neighbours for {j['same_top10']:.0%} of {j['n']} queries, mean "
          f"top-10 overlap {j['overlap']:.3f}; where they differ, the 10th and 11th neighbours were within "
          f"{j['max_tie_gap']:.4f} in cosine")
    print(f"source sample: {s['changed']} of {s['n']} images decode at a reduced size; min cosine {s['min_cos']:.4f}")
    for kind in ("jpeg", "heic"):
        m = agree[f"{kind}_metadata"]
        print(f"{kind}: EXIF date read back for {m['dates']}/{m['n']}, "
              f"upright after orientation {m['upright']}/{m['n']}")


if __name__ == "__main__":
    main()
