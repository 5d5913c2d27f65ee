"""The `imgsearch` command: train, ingest, search, metrics, worker, doctor, remove, app."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ingest.settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Embed, cluster, classify and search folders of images.",
)
# Wide enough for the summary table when output goes to a file or a CI log (rich assumes 80 there).
console = Console(width=None if sys.stdout.isatty() else 170)
log = logging.getLogger("imgsearch")

DataOpt = Annotated[Path | None, typer.Option("--data", help="Folder of class sub-folders (labels = folder names).")]
BackboneOpt = Annotated[
    str | None, typer.Option("--backbone", help="auto | resnet50 | efficientnet_lite2 | efficientnet_lite0")
]


def _settings(**overrides) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "PIL", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _workers(settings: Settings) -> int:
    if settings.num_workers is not None:
        return settings.num_workers
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def open_database(settings: Settings):
    from db.session import init_db, make_engine, session_factory

    engine = make_engine(settings.db_url)
    init_db(engine)
    return session_factory(engine)


def load_backbone_for(settings: Settings):
    from models.backbones import load_backbone

    return load_backbone(settings.backbone, resnet50_weights=settings.resnet50_weights, device=settings.device)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    _setup_logging(verbose)


@app.command("train")
def train_cmd(
    data: DataOpt = None,
    backbone: BackboneOpt = None,
    k: Annotated[int | None, typer.Option("--k", help="Number of clusters for K-Means and agglomerative.")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    include_background: Annotated[bool, typer.Option("--include-background", help="Keep BACKGROUND_Google.")] = False,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the database, caches and models live.")
    ] = None,
) -> None:
    """Embed a labelled folder (cached), fit SVM, random forest, K-Means and agglomerative; record metrics."""
    from db import repository as repo
    from ingest.dataset import DatasetUnavailable, find_dataset
    from ingest.feature_cache import FeatureCache
    from ingest.train import prepare_folder, train
    from models.backbones import BackboneUnavailable

    settings = _settings(
        backbone=backbone,
        k_clusters=k,
        seed=seed,
        batch_size=batch_size,
        data_dir=data_dir,
        include_background=include_background or None,
    )
    t0 = time.perf_counter()
    try:
        folder = (
            find_dataset(data or settings.dataset_dir, settings.data_dir)
            if data or settings.dataset_dir
            else find_dataset(None, settings.data_dir)
        )
        bb = load_backbone_for(settings)
    except (DatasetUnavailable, BackboneUnavailable, ValueError) as exc:
        _fail(str(exc))
    console.print(f"backbone: [bold]{bb.name}[/] ({bb.dim}-d, weights sha256 {bb.weights_sha256[:12]})")
    console.print(f"dataset:  {folder}")
    Session = open_database(settings)
    cache = FeatureCache(settings.features_dir, bb.identity)
    params = {
        "k": settings.k_clusters,
        "seed": settings.seed,
        "val_fraction": settings.val_fraction,
        "include_background": settings.include_background,
        "batch_size": settings.batch_size,
    }
    with Session.begin() as s:
        run = repo.start_run(s, "train", bb.name, bb.dim, bb.weights_sha256, params, str(folder))
        run_id = run.id
    try:
        counts = prepare_folder(
            Session,
            run_id,
            folder,
            bb,
            cache,
            settings.include_background,
            settings.batch_size,
            _workers(settings),
            settings.max_image_pixels,
        )
        result, _, _ = train(
            Session, run_id, bb, cache, settings.models_dir, settings.k_clusters, settings.val_fraction, settings.seed
        )
    except BaseException as exc:
        with Session.begin() as s:
            outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            repo.finish_run(s, s.get(repo.Run, run_id), outcome, message=f"{type(exc).__name__}: {exc}")
        if isinstance(exc, ValueError):
            _fail(str(exc))
        raise
    total = time.perf_counter() - t0
    with Session.begin() as s:
        r = s.get(repo.Run, run_id)
        r.dataset_fingerprint = counts["fingerprint"]
        repo.record_metrics(
            s,
            run_id,
            {
                "time.total_s": total,
                "time.embed_s": counts["embed_s"],
                "n_embedded": counts["n_embedded"],
                "n_cached": counts["n_cached"],
            },
        )
        repo.finish_run(
            s,
            r,
            "ok",
            n_images=int(result.metrics["n_images"]),
            n_skipped=int(counts["n_skipped"]),
            n_duplicates=int(counts["n_duplicates"]),
        )
    print_summary(run_id, bb.name, result.metrics, counts, total)


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def print_summary(run_id: int, backbone: str, m: dict, counts: dict, total_s: float) -> None:
    table = Table(
        title=f"Run {run_id} — {backbone}, {int(m['n_images'])} images, {int(m['n_classes'])} classes "
        f"(train {int(m['n_train'])} / val {int(m['n_val'])})"
    )
    table.add_column("model")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for model, label in (("svm", "SVM (RBF)"), ("random_forest", "Random Forest")):
        table.add_row(label, "val accuracy", _fmt(m[f"{model}.accuracy"]))
        table.add_row("", "val mean per-class acc.", _fmt(m[f"{model}.mean_per_class_accuracy"]))
        table.add_row("", "val macro-F1", _fmt(m[f"{model}.macro_f1"]))
    for model, label in (
        ("kmeans", f"K-Means (K={int(m['k'])})"),
        ("agglomerative", f"Agglomerative Ward (K={int(m['k'])})"),
    ):
        table.add_row(label, "silhouette", _fmt(m[f"{model}.silhouette"]))
        table.add_row("", "Davies–Bouldin", _fmt(m[f"{model}.davies_bouldin"]))
        table.add_row(
            "",
            "NMI / ARI / purity",
            f"{_fmt(m[f'{model}.nmi'], 3)} / {_fmt(m[f'{model}.ari'], 3)} / {_fmt(m[f'{model}.purity'], 3)}",
        )
    for scope, label in (
        ("retrieval_loo", "FAISS retrieval, leave-one-out"),
        ("retrieval_val", "FAISS retrieval, val → train"),
    ):
        table.add_row(
            label,
            "P@1 / P@5 / P@10",
            f"{_fmt(m[f'{scope}.p@1'])} / {_fmt(m[f'{scope}.p@5'])} / {_fmt(m[f'{scope}.p@10'])}",
        )
        table.add_row("", "P@10 class-averaged", _fmt(m[f"{scope}.p@10_class_avg"]))
        table.add_row(
            "", "mAP@10 (micro / class-avg)", f"{_fmt(m[f'{scope}.map@10'])} / {_fmt(m[f'{scope}.map@10_class_avg'])}"
        )
    console.print(table)
    console.print(
        f"images embedded this run: {counts['n_embedded']}, from cache: {counts['n_cached']}, "
        f"skipped: {counts['n_skipped']}, duplicates: {counts['n_duplicates']}"
    )
    console.print(f"embedding took {counts['embed_s']:.1f} s; whole run {total_s:.1f} s")


@app.command("metrics")
def metrics_cmd(
    limit: Annotated[int, typer.Option("--limit")] = 20,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Print the recorded runs with their headline metrics."""
    from db import repository as repo

    settings = _settings(data_dir=data_dir)
    Session = open_database(settings)
    table = Table(title=f"Runs in {settings.db_url}")
    for col in (
        "run",
        "kind",
        "started",
        "backbone",
        "outcome",
        "images",
        "skipped",
        "SVM acc",
        "RF acc",
        "KM sil.",
        "KM DB",
        "AG sil.",
        "AG DB",
        "P@10 loo",
        "mAP@10 loo",
    ):
        table.add_column(col)
    with Session() as s:
        runs = repo.list_runs(s, limit=limit)
        for r in runs:
            m = repo.run_metrics(s, r.id)
            table.add_row(
                str(r.id),
                r.kind,
                r.started_at.strftime("%Y-%m-%d %H:%M"),
                r.backbone or "—",
                r.outcome,
                str(r.n_images or 0),
                str(r.n_skipped or 0),
                *(
                    _fmt(m.get(key))
                    for key in (
                        "svm.accuracy",
                        "random_forest.accuracy",
                        "kmeans.silhouette",
                        "kmeans.davies_bouldin",
                        "agglomerative.silhouette",
                        "agglomerative.davies_bouldin",
                        "retrieval_loo.p@10",
                        "retrieval_loo.map@10",
                    )
                ),
            )
    if not runs:
        console.print("no runs recorded yet: run `imgsearch train` first")
        return
    console.print(table)


if __name__ == "__main__":
    sys.exit(app())
