"""Query helpers for runs (ingest, train) and their results: metrics, per-class metrics, artifacts, skipped files;
which training run's models are current. Each takes a Session, adds and flushes, never commits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from imgsearch.db.dialects import ids_stay_ahead
from imgsearch.db.models import (
    RUN_KINDS,
    RUN_OUTCOMES,
    SKIP_REASONS,
    ClassMetric,
    Image,
    Metric,
    Run,
    RunArtifact,
    SkippedFile,
    utcnow,
)
from imgsearch.db.values import check_choice, finite, plain

RUN_COUNTS = ("n_images", "n_skipped", "n_failed", "n_duplicates")


def restore_train_run(session: Session, run_id: int, backbone: str, dim: int, weights_sha256: str) -> Run:
    """Record a training run whose model files survived a lost catalogue; its metrics are gone with it."""
    run = Run(id=int(run_id), kind="train", backbone=backbone, backbone_dim=dim, weights_sha256=weights_sha256,
              outcome="ok", finished_at=utcnow(),
              message="restored by `imgsearch doctor --repair` from its saved model files; its metrics were lost "
                      "with the catalogue")
    session.add(run)
    session.flush()
    ids_stay_ahead(session, Run.__tablename__)
    return run


def start_run(
    session: Session,
    kind: str,
    backbone: str | None = None,
    backbone_dim: int | None = None,
    weights_sha256: str | None = None,
    params: Mapping[str, Any] | None = None,
    dataset_path: str | None = None,
    dataset_fingerprint: str | None = None,
) -> Run:
    """A new run with outcome 'running'; flushed, so ``run.id`` is set. Commit it for others to see it."""
    check_choice("kind", kind, RUN_KINDS)
    run = Run(
        kind=kind,
        backbone=backbone,
        backbone_dim=backbone_dim,
        weights_sha256=weights_sha256,
        params=dict(params) if params is not None else None,
        dataset_path=None if dataset_path is None else str(dataset_path),
        dataset_fingerprint=dataset_fingerprint,
        outcome="running",
    )
    session.add(run)
    session.flush()
    return run


def finish_run(session: Session, run: Run, outcome: str, message: str | None = None, **counts: int) -> Run:
    """Close ``run`` with ``outcome`` and the counts given (n_images, n_skipped, n_failed, n_duplicates)."""
    check_choice("outcome", outcome, RUN_OUTCOMES[1:])
    unknown = set(counts) - set(RUN_COUNTS)
    if unknown:
        raise TypeError(f"unknown run counts {sorted(unknown)}; expected some of {RUN_COUNTS}")
    run.outcome = outcome
    run.finished_at = utcnow()
    if message is not None:
        run.message = message
    for name, value in counts.items():
        setattr(run, name, int(value))
    session.flush()
    return run


def list_runs(session: Session, kind: str | None = None, limit: int | None = None) -> list[Run]:
    """Runs, newest first."""
    query = select(Run).order_by(Run.started_at.desc(), Run.id.desc()).limit(limit)
    if kind is not None:
        query = query.where(Run.kind == kind)
    return list(session.scalars(query))


def ingest_folders(session: Session) -> list[str]:
    """Every folder an ingest run was asked to read, as recorded (the operator's own, or inside the allowed roots)."""
    query = select(Run.dataset_path).where(Run.kind == "ingest", Run.dataset_path.is_not(None)).distinct()
    return sorted(session.scalars(query))


def current_model_run(session: Session, backbone: str, weights_sha256: str) -> Run | None:
    """The newest training run that finished for this backbone: its models are the current ones.

    A training run is recorded 'ok' only after its model files are saved, in the same transaction as its
    results, so this commit is the one switch to new models that everything else follows.
    """
    query = (
        select(Run)
        .where(Run.kind == "train", Run.outcome == "ok", Run.backbone == backbone, Run.weights_sha256 == weights_sha256)
        .order_by(Run.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def indexed_with(session: Session, backbone: str, weights_sha256: str) -> int:
    """How many images are indexed, if any ingest with this backbone has written vectors; else 0."""
    wrote = select(Run.id).where(Run.kind == "ingest", Run.backbone == backbone, Run.weights_sha256 == weights_sha256,
                                 Run.n_images > 0).limit(1)
    if session.scalar(wrote) is None:
        return 0
    return int(session.scalar(select(func.count()).select_from(Image).where(Image.status == "indexed")) or 0)


def stale_predictions(session: Session, current: Run) -> int:
    """Images whose stored prediction is not from `current`'s models: made by an older run of the same
    backbone, or recorded before predictions named their run."""
    older = select(Run.id).where(Run.kind == "train", Run.backbone == current.backbone,
                                 Run.weights_sha256 == current.weights_sha256, Run.id != current.id)
    query = select(func.count()).select_from(Image).where(
        or_(Image.model_run_id.in_(older), Image.model_run_id.is_(None) & Image.predicted_label.is_not(None))
    )
    return int(session.scalar(query) or 0)


def latest_run(session: Session, kind: str, outcome: str | None = "ok") -> Run | None:
    """The newest run of ``kind`` with ``outcome`` (any outcome when None)."""
    query = select(Run).where(Run.kind == kind).order_by(Run.started_at.desc(), Run.id.desc()).limit(1)
    if outcome is not None:
        query = query.where(Run.outcome == outcome)
    return session.scalars(query).first()


def record_metrics(session: Session, run_id: int, metrics: Mapping[str, float]) -> None:
    """Store named scalar results of a run; a name recorded again is overwritten."""
    existing = {m.name: m for m in session.scalars(select(Metric).where(Metric.run_id == run_id))}
    for name, raw in metrics.items():
        value = finite(name, raw)
        if name in existing:
            existing[name].value = value
        else:
            session.add(Metric(run_id=run_id, name=name, value=value))
    session.flush()


def run_metrics(session: Session, run_id: int) -> dict[str, float]:
    rows = session.execute(select(Metric.name, Metric.value).where(Metric.run_id == run_id).order_by(Metric.id))
    return {name: value for name, value in rows}


def record_class_metrics(
    session: Session, run_id: int, model: str, rows: Iterable[Mapping[str, Any]]
) -> list[ClassMetric]:
    """Per-class results of ``model``; rows have label, precision, recall, f1, support, optional accuracy."""
    added = []
    for row in rows:
        label = str(row["label"])
        accuracy = row.get("accuracy")
        metric = ClassMetric(
            run_id=run_id,
            model=model,
            label=label,
            precision=finite(f"{label} precision", row["precision"]),
            recall=finite(f"{label} recall", row["recall"]),
            f1=finite(f"{label} f1", row["f1"]),
            support=int(row["support"]),
            accuracy=None if accuracy is None else finite(f"{label} accuracy", accuracy),
        )
        session.add(metric)
        added.append(metric)
    session.flush()
    return added


def run_class_metrics(session: Session, run_id: int, model: str | None = None) -> list[ClassMetric]:
    query = select(ClassMetric).where(ClassMetric.run_id == run_id).order_by(ClassMetric.id)
    if model is not None:
        query = query.where(ClassMetric.model == model)
    return list(session.scalars(query))


def record_artifact(session: Session, run_id: int, name: str, data: Any) -> RunArtifact:
    """Store a JSON document (numpy values become lists and numbers) under ``name``, replacing any."""
    artifact = session.scalars(
        select(RunArtifact).where(RunArtifact.run_id == run_id, RunArtifact.name == name)
    ).one_or_none()
    data = plain(data)
    if artifact is None:
        artifact = RunArtifact(run_id=run_id, name=name, data=data)
        session.add(artifact)
    else:
        artifact.data = data
    session.flush()
    return artifact


def run_artifact(session: Session, run_id: int, name: str) -> Any | None:
    return session.scalar(select(RunArtifact.data).where(RunArtifact.run_id == run_id, RunArtifact.name == name))


def record_skipped(session: Session, run_id: int, path: str, reason: str, message: str | None = None) -> SkippedFile:
    """Note a file the run did not catalogue; ``reason`` is one of SKIP_REASONS."""
    check_choice("reason", reason, SKIP_REASONS)
    skipped = SkippedFile(run_id=run_id, path=str(path), reason=reason, message=message)
    session.add(skipped)
    session.flush()
    return skipped


def skipped_files(session: Session, run_id: int) -> list[SkippedFile]:
    return list(session.scalars(select(SkippedFile).where(SkippedFile.run_id == run_id).order_by(SkippedFile.id)))
