"""How the worker runs each kind of job in this application: ingest a folder, or train."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ingest.worker import JobHandler, JobRequest, JobResult, ProgressFn
from imgsearch.ui.services import inputs
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from imgsearch.ui.services.training import IngestIncomplete, run_training
from imgsearch.ui.services.training_stages import JobStageSink


def inbox_confinement(settings: Settings, inbox: Path) -> list[Path]:
    """The folders `worker --inbox` jobs are confined to: the allowed roots, as the app's and the API's ingests are.

    inputs.FolderRejected, whose message says what to set, when the inbox itself is not an existing folder inside
    them (its images could be neither ingested nor served).
    """
    roots = inputs.allowed_roots(settings.allowed_roots, settings.data_dir, settings.dataset_dir)
    inputs.validate_folder(str(inbox), roots)
    return roots


def job_handlers(ctx: Context) -> dict[str, JobHandler]:
    def ingest(job: JobRequest, should_stop, on_progress: ProgressFn) -> JobResult:
        ctx.calibrate_on = ctx.calibrate_on or Path(job.folder)  # int8: calibrated on the first folder
        report = ingest_folder(
            Path(job.folder), ctx.Session, ctx.backbone, ctx.cache, ctx.stores, ctx.predictors(),
            replace(ctx.ingest_options(job.options.get("labels_from_folders", True), job.options.get("confine_to")),
                    root_label=job.options.get("root_label")),
            progress=False, on_progress=on_progress, should_stop=should_stop,
        )
        return JobResult(run_id=report.run_id, n_failed=report.n_skipped, interrupted=report.outcome == "interrupted",
                         summary=f"{report.n_indexed} new images indexed, {report.n_skipped} skipped")

    def train(job: JobRequest, should_stop, on_progress: ProgressFn) -> JobResult:
        try:
            outcome = run_training(ctx, Path(job.folder) if job.folder else None,
                                   force=bool(job.options.get("force", False)), progress=False,
                                   on_ingest_progress=on_progress, should_stop=should_stop,
                                   on_stage=JobStageSink(ctx.Session, job.id, job.worker_id))
        except IngestIncomplete as exc:
            if exc.report.outcome != "interrupted":
                raise
            return JobResult(run_id=exc.report.run_id, interrupted=True, summary="stopped while ingesting")
        what = "nothing changed: models of run" if outcome.reused else "trained run"
        return JobResult(run_id=outcome.run_id, summary=f"{what} {outcome.run_id} current")

    return {"ingest": ingest, "train": train}
