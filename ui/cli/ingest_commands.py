"""`imgsearch ingest` and `imgsearch train` (ui/services/training.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imgsearch.ui.cli.common import (
    BackboneOpt,
    DataDirOpt,
    DataOpt,
    console,
    enqueue,
    fail,
    open_context,
    open_stores,
    resumable,
)

if TYPE_CHECKING:
    from imgsearch.ui.services.training_stages import Stage


def _ingest(ctx, folder: Path, labels_from_folders: bool):
    from imgsearch.ingest.pipeline import ingest_folder
    from imgsearch.search.index import StoreBusyError

    if not folder.is_dir():
        fail(f"folder not found: {folder}")
    ctx.calibrate_on = ctx.calibrate_on or folder  # an int8 model is calibrated on the collection's first folder
    ctx.require_intact()
    console.print(f"ingesting {folder}")
    try:
        report = ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, open_stores(ctx), ctx.predictors(),
                               ctx.ingest_options(labels_from_folders))
    except StoreBusyError as exc:
        fail(str(exc))
    _print_ingest(report)
    if report.outcome != "ok":
        fail(f"ingest {report.outcome}; run the same command again to finish it")
    return report


class StageLines:
    """`imgsearch train`'s stages: a numbered line as each starts, its time when done, a tqdm bar (as ingest's)
    in a stage with a count."""

    def __init__(self) -> None:
        self.bar: Any = None

    def started(self, stage: Stage) -> None:
        console.print(stage.line, highlight=False)

    def advanced(self, stage: Stage, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=stage.label, unit="img", dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def finished(self, stage: Stage, seconds: float) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        console.print(f"      {stage.label}: {seconds:.1f} s", highlight=False)


def _print_ingest(report) -> None:
    for path, reason, message in report.skipped:
        console.print(f"  [yellow]{reason}[/]: {path}: {message}", highlight=False)
    t = report.timings
    console.print(
        f"ingest run {report.run_id}: {report.n_scanned} images found, {report.n_new} new, {report.n_known} already "
        f"catalogued, {report.n_indexed} embedded and indexed, {report.n_skipped} skipped, "
        f"{report.n_duplicates} duplicates, {report.n_recovered} recovered from an interrupted run "
        f"(scan {t['scan_s']:.1f} s, embed {t['embed_s']:.1f} s, store writes {t['store_s']:.1f} s)"
    )



def ingest_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of images (class sub-folders give labels).")],
    labels_from_folders: Annotated[
        bool, typer.Option("--labels-from-folders/--no-labels", help="Label images by their top-level sub-folder.")
    ] = True,
    queue: Annotated[bool, typer.Option("--queue", help="Hand the folder to `imgsearch worker` instead.")] = False,
    backbone: BackboneOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Add a folder of images to the catalogue, Qdrant and the FAISS mirror (only what is new is embedded)."""
    from imgsearch.ingest.scan import printable

    folder = folder.expanduser().resolve()
    if printable(folder) != str(folder):
        fail(f"the folder name {printable(folder)} is not valid UTF-8, and the catalogue keeps paths as text: "
              "rename it (e.g. `convmv -f latin1 -t utf8 --notest FOLDER`) and ingest again")
    if queue:
        job_id = enqueue(data_dir, str(folder), {"labels_from_folders": labels_from_folders})
        console.print(f"queued job {job_id} for {folder}; `imgsearch worker` will ingest it")
        return
    t = time.perf_counter()
    with resumable(), open_context("ingest", calibrate_on=folder, backbone=backbone, data_dir=data_dir) as ctx:
        _ingest(ctx, folder, labels_from_folders)
    console.print(f"took {time.perf_counter() - t:.1f} s")


def train_cmd(
    data: DataOpt = None,
    backbone: BackboneOpt = None,
    k: Annotated[int | None, typer.Option("--k", help="Number of clusters for K-Means and agglomerative.")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    include_background: Annotated[bool, typer.Option("--include-background", help="Keep BACKGROUND_Google.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Refit even when nothing changed since the last run.")] = False,
    queue: Annotated[bool, typer.Option("--queue", help="Hand the training run to `imgsearch worker`.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Fit K-Means and agglomerative on every image, SVM and random forest on the labelled ones (when at least
    2 labels have enough images), and record the metrics.

    With --data the folder is ingested first. With no --data and an empty catalogue (only then), a Caltech-101
    copy is looked for (and downloaded when none is found) and ingested.
    """
    from imgsearch.ui.services.dataset import DatasetUnavailable
    from imgsearch.ui.services.report import print_summary
    from imgsearch.ui.services.training import IngestIncomplete, run_training

    if queue:
        folder = str(data.expanduser().resolve()) if data else ""
        job_id = enqueue(data_dir, folder, {"force": force}, kind="train")
        console.print(f"queued training job {job_id}; `imgsearch worker` will run it")
        return

    with resumable(), open_context("train", calibrate_on=data, backbone=backbone, k_clusters=k, seed=seed,
                                batch_size=batch_size, data_dir=data_dir,
                                include_background=include_background or None) as ctx:
        try:
            outcome = run_training(ctx, data, force=force, on_ingested=_print_ingest, on_stage=StageLines())
        except (IngestIncomplete, DatasetUnavailable, ValueError) as exc:  # ValueError: too few images for K
            fail(str(exc))
    print_summary(console, outcome.run_id, ctx.backbone.name, outcome.metrics)
    for note in outcome.notes:
        console.print(note, highlight=False)
    if outcome.reused:
        console.print(f"nothing changed since training run {outcome.run_id} (same images, labels, backbone and "
                      "parameters): its models and results are current. Use --force to refit anyway.")
        console.print(f"whole run {outcome.total_s:.1f} s")
        return
    if outcome.superseded_by is not None:
        console.print(f"training run {outcome.run_id} finished, but training run {outcome.superseded_by} (started "
                      "later, by another process) is newer: its models are the current ones, not these")
    else:
        console.print(f"models of run {outcome.run_id} are now current; predictions and clusters refreshed in the "
                      "stores")
    console.print(f"whole run {outcome.total_s:.1f} s (fitting and evaluation {outcome.fit_s:.1f} s)")


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_cmd)
    app.command("train")(train_cmd)
