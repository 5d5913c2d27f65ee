"""`imgsearch doctor`: do the catalogue, Qdrant and the FAISS mirror agree — ids, vectors, and the current
models' predictions? `repair` makes them agree by rebuilding from whatever still holds the data; it never
deletes what it could rebuild from (deleting orphan vectors takes an explicit `delete_orphans`).

Here, the whole sequence as the command runs it (`run`). Its parts: the check (doctor_check.py, with --deep's file
check in doctor_deep.py) and its report (doctor_report.py); damaged files moved aside (doctor_damage.py); lost
models fitted again (doctor_refit.py); the repair (doctor_repair.py), which rebuilds catalogue rows from payloads
and model files (doctor_rebuild.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from imgsearch.ui.services.doctor_check import check
from imgsearch.ui.services.doctor_damage import catalogue_problem, open_for_repair
from imgsearch.ui.services.doctor_refit import refit_models
from imgsearch.ui.services.doctor_repair import repair

repair_stores = repair  # under a second name for `run`, whose flag is called repair


@dataclass
class DoctorRun:
    """What `run` did, for a front end to print: `lines` in order (check's report, then `repair: ...` lines and the
    recheck's summary), whether the stores agree at the end, and `refused`: a damaged catalogue found without
    `repair` (nothing else was done)."""

    lines: list[str] = field(default_factory=list)
    consistent: bool = False
    refused: str | None = None


def run(ctx, repair: bool = False, delete_orphans: bool = False, deep: bool = False,
        say: Callable[[str], None] | None = None) -> DoctorRun:
    """Check; with `repair`: make the catalogue and stores openable first, fit lost models again, repair what the
    check found, and check again. `say` hears each line as it comes (a repair takes a while); the result has them
    all. StoreBusyError / StoreMismatchError from opening the stores go to the caller."""
    from imgsearch.models.persistence import ModelLoadError

    result = DoctorRun()

    def out(line: str) -> None:
        result.lines.append(line)
        if say is not None:
            say(line)

    if repair:
        for line in open_for_repair(ctx):
            out(f"repair: {line}")
    else:
        result.refused = catalogue_problem(ctx)
        if result.refused:
            return result
    stores = ctx.stores

    def models():
        try:
            return ctx.trained(), None
        except ModelLoadError as exc:
            return None, str(exc)

    trained, problem = models()
    report = check(ctx.Session, stores, trained, problem, deep=deep, cache=ctx.cache, backbone=ctx.backbone,
                   current_run_id=ctx.trained_run_id())
    for line in report.lines():
        out(line)
    if repair and problem:
        out(f"repair: {refit_models(ctx)}")
        trained, problem = models()
    if repair and not report.consistent:
        for line in repair_stores(ctx.Session, stores, ctx.cache, report, trained, delete_orphans=delete_orphans,
                                  backbone=ctx.backbone, models_dir=ctx.settings.models_dir,
                                  duplicate_threshold=ctx.settings.duplicate_threshold):
            out(f"repair: {line}")
        trained, problem = models()  # runs restored from their model files may have made some current
        report = check(ctx.Session, stores, trained, problem, cache=ctx.cache, current_run_id=ctx.trained_run_id())
        out(report.lines()[-1])
    result.consistent = report.consistent
    return result
