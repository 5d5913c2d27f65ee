"""Training's stages, in the order `run_training` runs them, reported to a sink as each one starts.

After its ingest, a training run fits for minutes with nothing else to show; the stages say where it is. The CLI
prints them (ui/cli), a job records them in its queue row (`JobStageSink`), and the app shows that row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import jobs

log = logging.getLogger(__name__)

LABELS = {
    "ingest": "ingest",
    "tags": "tags",
    "features": "features",
    "svm": "SVM",
    "random_forest": "random forest",
    "kmeans": "K-Means",
    "agglomerative": "agglomerative",
    "evaluation": "evaluation",
    "save": "saving",
    "refresh": "refresh",
    "map": "map",
}
# run_experiment's steps (its on_step names) that begin a stage; the others belong to the stage before them.
EXPERIMENT_STEPS = {"fit_svm": "svm", "fit_random_forest": "random_forest", "fit_kmeans": "kmeans",
                    "fit_agglomerative": "agglomerative", "retrieval_eval": "evaluation"}


def plan(ingest: bool, tags: bool, fit: bool = True, classifiers: bool = True, evaluation: bool = True
         ) -> list[str]:
    """The stages' keys in the order they run. `fit`: False when nothing changed since the current run (its
    models are kept; only its stored predictions and map are brought up to date)."""
    head = ["ingest"] * ingest + ["tags"] * tags + ["features"]
    if not fit:
        return head + ["refresh", "map"]
    return (head + ["svm", "random_forest"] * classifiers + ["kmeans", "agglomerative"] + ["evaluation"] * evaluation
            + ["save", "refresh", "map"])


@dataclass(frozen=True)
class Stage:
    key: str
    index: int  # from 1
    total: int
    detail: str = ""

    @property
    def label(self) -> str:
        return LABELS.get(self.key, self.key)

    @property
    def title(self) -> str:
        """"SVM (least-squares, 8,677 labelled images)": what the stage does."""
        return f"{self.label} ({self.detail})" if self.detail else self.label

    @property
    def line(self) -> str:
        return f"[{self.index}/{self.total}] {self.title}…"


class StageSink(Protocol):
    """Where a training run's stages go. `advanced` comes only in stages with a count (the payload refresh)."""

    def started(self, stage: Stage) -> None: ...

    def advanced(self, stage: Stage, done: int, total: int) -> None: ...

    def finished(self, stage: Stage, seconds: float) -> None: ...


class StageReporter:
    """Tells its sink each stage as it starts, and how long the one before took.

    The plan is what is known when training starts; `replan` narrows it once the collection is read (whether
    the classifiers fit, whether anything changed). A stage started out of plan skips those planned before it.
    """

    def __init__(self, keys: Sequence[str], sink: StageSink | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.keys = list(keys)
        self.sink = sink
        self.clock = clock
        self.current: Stage | None = None
        self._n_started = 0
        self._t = 0.0

    def replan(self, rest: Sequence[str]) -> None:
        """The stages still to come after the current one."""
        self.keys = self.keys[: self._n_started] + list(rest)

    def start(self, key: str, detail: str = "") -> None:
        self.finish()
        n = self._n_started
        later = self.keys[n:]
        self.keys = self.keys[:n] + (later[later.index(key):] if key in later else [key, *later])
        self._n_started = n + 1
        self.current = Stage(key, n + 1, len(self.keys), detail)
        self._t = self.clock()
        log.debug("training: %s", self.current.line)  # the sinks say it where it is seen (the CLI, a job)
        if self.sink is not None:
            self.sink.started(self.current)

    def advance(self, done: int, total: int) -> None:
        if self.current is not None and self.sink is not None:
            self.sink.advanced(self.current, done, total)

    def finish(self) -> None:
        """The current stage is done (the next `start` does this by itself)."""
        if self.current is None:
            return
        stage, self.current = self.current, None
        seconds = self.clock() - self._t
        log.debug("training: %s took %.1f s", stage.title, seconds)
        if self.sink is not None:
            self.sink.finished(stage, seconds)

    def experiment_step(self, details: dict[str, str]) -> Callable[[str], None]:
        """run_experiment's on_step: starts the stage a step begins, with its detail from `details`."""

        def step(name: str) -> None:
            key = EXPERIMENT_STEPS.get(name)
            if key is not None:
                self.start(key, details.get(key, ""))

        return step


class JobStageSink:
    """Records each stage in the job's queue row (only while `worker_id` holds the job), for the app's panel and
    `imgsearch jobs`."""

    def __init__(self, Session: sessionmaker[Session], job_id: int, worker_id: str | None = None):
        self.Session = Session
        self.job_id = job_id
        self.worker_id = worker_id

    def started(self, stage: Stage) -> None:
        log.info("job %d: training stage %d of %d: %s", self.job_id, stage.index, stage.total, stage.title)
        with self.Session.begin() as s:
            jobs.update_job_stage(s, self.job_id, stage.title, stage.index, stage.total, worker_id=self.worker_id)

    def advanced(self, stage: Stage, done: int, total: int) -> None:
        pass  # the row says which stage; counts inside one would be a write per chunk for little

    def finished(self, stage: Stage, seconds: float) -> None:
        pass  # the next stage's start overwrites it; the job's outcome follows the last one
