"""Crash points: SIGKILL an `imgsearch` command at the Nth call of a named function, then judge what is left.

No hook in production code: the function is wrapped from outside, in the process that runs the command, with a
counter that sends the process SIGKILL on its Nth call (before the call runs, or with `--after` right after it
returns). A name is `module:attribute` or `module:Class.method`, or one of the short names in KILL_POINTS:

    python -m tests.faults.crashpoint --kill-at faiss.delete --nth 1 -- remove /photos/apples/apples_005.jpg
    python -m tests.faults.crashpoint --count qdrant.delete --count commit -- remove /photos/apples/apples_005.jpg
    python -m tests.faults.crashpoint --table [--all-n] [--commands remove,relabel]   # docs/crash_points.md

Only calls made on the main thread count: the lease-renewal thread commits at moments that depend on timing, and
a kill point must be the same call in the counting run and in the run that is killed.

After a kill each cell is judged the same way (`Harness.run_cell`): `imgsearch doctor`, whose exit code is its
verdict (0: the stores agree, 1: they do not; it has no --json); `doctor --repair` when it exits 1 (repair checks
again at its end, and exits 1 if the stores still disagree); for the commands whose job is to be run again (ingest,
train, restore --force) that command once more, and doctor. Then the catalogue, Qdrant and the FAISS mirror are
read directly (`snapshot`: rows, ids, payloads, vectors, what a search returns) and compared with each other, with
the state before the command, and with the state a run that was not killed leaves. A backup is judged by the data
dir it was made from (untouched) and by what `imgsearch restore` makes of it. The outcome is one of
    finished               the command's effect is complete, and the three stores agree;
    rolled back            the state is exactly as before the command (only where the kill came before the
                           catalogue, the store of record, had the effect: else this is "undone");
    undone                 the effect had reached the catalogue, and the end state is the one before it (repair
                           reversed it), or a command meant to be run again did not finish on its rerun;
    incomplete             the effect had reached the catalogue, and the end state is neither before nor after;
    mixed                  the same, with a kill before the catalogue had the effect;
    silently inconsistent  doctor says all agree, yet the stores disagree with each other or with the catalogue
                           (with the effect's own outcome after a comma when that is wrong too);
    not repaired           doctor still reports a problem after --repair.
Only the first two are acceptable.

`--table` and tests/faults/test_crash_points.py run the cells through a fork server (`Server`): one process that
imports imgsearch, torch and scikit-learn and compiles UMAP's numba code once (20-30 s on a busy 2-core machine),
then forks a child for every step of every cell (each is then a fraction of a second to a few seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Short names for the functions worth killing at: every write to a vector store, the catalogue's commit, and the
# file writes and copies of training, backup and restore.
KILL_POINTS: dict[str, str] = {
    "qdrant.upsert": "imgsearch.search.qdrant_edge:EdgeIndex.upsert",
    "qdrant.delete": "imgsearch.search.qdrant_edge:EdgeIndex.delete",
    "qdrant.set_payload": "imgsearch.search.qdrant_edge:EdgeIndex.set_payload",
    "faiss.upsert": "imgsearch.search.faiss_index:FaissIndex.upsert",
    "faiss.delete": "imgsearch.search.faiss_index:FaissIndex.delete",
    "faiss.set_payload": "imgsearch.search.faiss_index:FaissIndex.set_payload",
    # The DBAPI commit, counted only when the connection has written (see _writes_pending): a session that only
    # read commits too, and killing before that commit is no different from killing after the previous one.
    "commit": "sqlalchemy.engine.default:DefaultDialect.do_commit",
    "atomic_write": "imgsearch.models.files:atomic_write",  # model files, FAISS manifest, backup manifest
    "os.replace": "os:replace",  # the rename inside atomic_write: its temp file is complete, not yet in place
    "copy_tree": "imgsearch.ui.services.backup:copy_tree",  # backup: a store folder or the models, cp -a
    "copy2": "shutil:copy2",
    "backup_catalogue": "imgsearch.ui.services.backup:_backup_catalogue",
    # restore: everything is copied into a staging folder, a journal written, then swapped in by renames
    "stage_copy": "imgsearch.ui.services.restore:copy_tree",
    "restore_catalogue": "imgsearch.ui.services.restore:_stage_sqlite",
    "swap_journal": "imgsearch.ui.services.restore_swap:write_journal",
    "os.rename": "os:rename",
}
OUTCOMES_OK = ("finished", "rolled back")
TEST_BACKBONE = "tiny"


# ---- the wrapper: count calls, SIGKILL at the Nth ------------------------------------------------------------------


def _writes_pending(dbapi_connection: Any) -> bool:
    """Whether the connection about to commit has written: sqlite3 opens a transaction only for a write."""
    inner = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    in_transaction = getattr(inner, "in_transaction", None)
    return True if in_transaction is None else bool(in_transaction)  # another driver: every commit counts


PREDICATES: dict[str, Callable[..., bool]] = {"commit": lambda _self, conn, *a, **k: _writes_pending(conn)}


def resolve(name: str) -> tuple[str, Callable[..., bool] | None]:
    return KILL_POINTS.get(name, name), PREDICATES.get(name)


def _rebind(original: Any, wrapper: Any) -> None:
    """Replace every module-level binding of `original` (`from x import f` copies made before the wrap)."""
    for module in list(sys.modules.values()):
        d = getattr(module, "__dict__", None)
        if not isinstance(d, dict):
            continue
        for key, value in list(d.items()):
            if value is original:
                setattr(module, key, wrapper)


@dataclass
class Counter:
    name: str
    target: str
    predicate: Callable[..., bool] | None = None
    kill_at: int | None = None  # None: count only
    after: bool = False
    calls: int = 0
    labels: list[str] = field(default_factory=list)  # per counted call: the file it writes, where it names one

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            hit = False
            if threading.current_thread() is threading.main_thread() and (
                    self.predicate is None or self.predicate(*args, **kwargs)):
                self.calls += 1
                self.labels.append(_describe(args))
                hit = self.calls == self.kill_at
            if hit and not self.after:
                self._die()
            result = fn(*args, **kwargs)
            if hit:
                self._die()
            return result

        counted.__wrapped__ = fn  # type: ignore[attr-defined]
        return counted

    def _die(self) -> None:
        # Only the diagnostics are flushed: whatever the command itself buffered is lost, as in a real crash.
        print(f"crashpoint: SIGKILL {'after' if self.after else 'at'} {self.name} call {self.calls}",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _describe(args: tuple[Any, ...]) -> str:
    """The file a call writes (its last path argument: the target of a copy or a rename), by name, for the table."""
    paths = [a for a in args if isinstance(a, Path) or (isinstance(a, str) and a.startswith("/") and "\n" not in a)]
    return Path(paths[-1]).name if paths else ""


def install(counter: Counter) -> None:
    module_name, _, attr = counter.target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *path, last = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = owner.__dict__[last] if isinstance(owner, type) else getattr(owner, last)
    wrapped = counter.wrap(original)
    setattr(owner, last, wrapped)
    if not isinstance(owner, type):
        _rebind(original, wrapped)


def run_cli(args: Sequence[str], counters: Sequence[Counter] = ()) -> int:
    """`imgsearch ARGS` through the console entry point in this process, with `counters` installed. Exit code."""
    for c in counters:
        install(c)
    from imgsearch.ui.cli import run

    sys.argv = ["imgsearch", *args]
    try:
        run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


# ---- reading the state: catalogue, Qdrant, FAISS mirror ----------------------------------------------------------

# Payload fields that differ between two equally good runs (the ids of runs, the time a row was made): left out
# when states of different runs are compared, still compared between the two stores of one state.
RUN_LOCAL = ("ingest_run_id", "time")
ROUND = 5


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, ROUND)
    return value


def snapshot(data_dir: str, stores: bool = True) -> dict[str, Any]:
    """The state of a data dir, read through the project's own Context (settings, catalogue, stores factory).

    rows: path -> the row's payload fields and status (ids become paths, run ids 'current' or 'old'); with
    `stores`, also qdrant / faiss: path (or #id for a point with no row) -> payload, search: path -> the path of the
    top FAISS hit for its cached vector, and problems: every disagreement between the catalogue and the stores.
    """
    import numpy as np
    from sqlalchemy import select

    from imgsearch.db import jobs
    from imgsearch.db import repository as repo
    from imgsearch.db.models import Image, Run
    from imgsearch.ingest.payload_sync import catalogue_payload
    from imgsearch.models.trained import PREDICTION_FIELDS, has_models
    from imgsearch.search.payload import payload_for
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings

    settings = Settings(data_dir=Path(data_dir), backbone=TEST_BACKBONE)
    out: dict[str, Any] = {"problems": []}
    problems = out["problems"]
    with Context(settings, role="crashpoint") as ctx:
        bb = ctx.backbone
        with ctx.Session() as s:
            rows = {im.id: im for im in s.scalars(select(Image))}
            current = repo.current_model_run(s, bb.name, bb.weights_sha256)
            running = [r.id for r in s.scalars(select(Run).where(Run.outcome == "running"))]
            open_batches = len(jobs.pending_batches(s))
        current_id = current.id if current is not None else None
        path_of = {i: im.path for i, im in rows.items()}

        def norm(payload: dict[str, Any], local: bool = False) -> dict[str, Any]:
            # A field set to None is a field without a value: Qdrant's set_payload deletes a key it is given None
            # for, where upsert and the FAISS mirror keep it as null; filters and doctor read both the same way.
            p = {k: _plain(v) for k, v in payload.items() if v is not None and (local or k not in RUN_LOCAL)}
            if p.get("duplicate_group") is not None:
                p["duplicate_group"] = path_of.get(p["duplicate_group"], f"#{p['duplicate_group']}")
            if p.get("model_run_id") is not None:
                p["model_run_id"] = "current" if p["model_run_id"] == current_id else "old"
            return p

        out["rows"] = {im.path: {**norm(payload_for(im)), "status": im.status} for im in rows.values()}
        out["ids"] = {im.path: i for i, im in rows.items()}
        out["models"] = None if current is None else {
            "k": (current.params or {}).get("k"),
            "files": has_models(settings.models_dir, bb.identity, current.id)}
        out["running_runs"] = running
        if open_batches:
            problems.append(f"{open_batches} journal batches left open")
        if not stores:
            return out
        st = ctx.stores
        points: dict[str, dict[int, dict[str, Any]]] = {}
        vectors: dict[str, np.ndarray] = {}
        for name, index in st.all:
            ids = index.ids().tolist()
            points[name] = dict(zip(ids, index.get_payloads(ids), strict=True)) if ids else {}
            vectors[name] = index.get_vectors(ids) if ids else np.zeros((0, bb.dim), np.float32)
            out[name] = {path_of.get(i, f"#{i}"): norm(p) for i, p in points[name].items()}
        indexed = {i for i, im in rows.items() if im.status == "indexed"}
        by_point: dict[str, list[int]] = {}  # problem -> the points that have it, reported once for all of them

        def point_problem(i: int, what: str) -> None:
            by_point.setdefault(what, []).append(i)

        for i, im in rows.items():
            if im.status != "indexed":
                point_problem(i, f"catalogue row {im.status}, not indexed")
        for name in ("qdrant", "faiss"):
            ids = set(points[name])
            for i in ids - set(rows):
                point_problem(i, f"in {name} with no catalogue row")
            for i in indexed - ids:
                point_problem(i, f"indexed in the catalogue, missing from {name}")
        q_row = {i: k for k, i in enumerate(points["qdrant"])}
        f_row = {i: k for k, i in enumerate(points["faiss"])}
        for i in sorted(set(points["qdrant"]) & set(points["faiss"])):
            q, f = norm(points["qdrant"][i], local=True), norm(points["faiss"][i], local=True)
            if q != f:
                differ = sorted(k for k in q.keys() | f.keys() if q.get(k) != f.get(k))
                point_problem(i, f"Qdrant and FAISS payloads differ in {differ}")
            if float(vectors["qdrant"][q_row[i]] @ vectors["faiss"][f_row[i]]) < 0.9999:
                point_problem(i, "Qdrant and FAISS vectors differ")
        for i in sorted(set(points["qdrant"]) & set(rows)):
            stored = norm(points["qdrant"][i])
            expected = norm({**catalogue_payload(rows[i]), **{k: getattr(rows[i], k) for k in PREDICTION_FIELDS}})
            diff = sorted(k for k in expected if k not in RUN_LOCAL and stored.get(k) != expected[k])
            if diff:
                point_problem(i, f"Qdrant payload differs from the catalogue row in {diff}")
            if current_id is not None and stored.get("model_run_id") != "current":
                point_problem(i, "predictions are not the current models'")
        for what, ids in by_point.items():
            names = [Path(path_of[i]).name if i in path_of else f"#{i}" for i in sorted(ids)]
            problems.append(f"{len(ids)} points ({', '.join(names[:3])}{', ...' if len(ids) > 3 else ''}): {what}")
        if current is not None and not out["models"]["files"]:
            problems.append(f"the current training run {current_id} has no model files")
        # What a search returns: FAISS (the search service's store) queried with each cached vector. An image
        # whose row is gone must not come back, whatever the stores still hold.
        cache = ctx.cache
        cache.refresh()
        hashes = sorted(cache._vectors)  # every image ever embedded here, removed ones included
        out["search"] = {}
        if hashes and st.faiss.count():
            for h, hit in zip(hashes, st.faiss.search(cache.get(hashes), 1), strict=True):
                if hit and hit[0].score > 0.9999:
                    out["search"][h[:16]] = path_of.get(hit[0].id, f"#{hit[0].id}")
                    if hit[0].id not in rows:
                        problems.append(f"search returns point {hit[0].id}, which has no catalogue row")
    return out


def expire_leases(data_dir: str) -> int:
    """Move the leases of runs still 'running' into the past: the killed process's lease has run out, as it would
    have a lease later (db/leases.py), without the harness waiting that long or making leases so short that a
    busy machine lets a living run's lease lapse."""
    from datetime import timedelta

    from sqlalchemy import update

    from imgsearch.db.models import Run, utcnow
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    Session = open_database(Settings(data_dir=Path(data_dir), backbone=TEST_BACKBONE))
    with Session.begin() as s:
        done = s.execute(update(Run).where(Run.outcome == "running")
                         .values(lease_expires_at=utcnow() - timedelta(hours=1)))
        return done.rowcount


def comparable(state: dict[str, Any], keys: Sequence[str] = ("rows", "models", "qdrant", "faiss", "search")) -> dict:
    return {k: state.get(k) for k in keys}


def _short(value: Any) -> str:
    """Paths by their file name: enough to read a difference by."""
    return repr(Path(value).name) if isinstance(value, str) and value.startswith("/") else repr(value)


def diff_states(a: dict[str, Any], b: dict[str, Any], keys: Sequence[str]) -> list[str]:
    """A few lines saying where two states differ (for a failing cell's message)."""
    out = []
    for key in keys:
        x, y = a.get(key), b.get(key)
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            only_x, only_y = sorted(set(x) - set(y)), sorted(set(y) - set(x))
            changed = sorted(k for k in set(x) & set(y) if x[k] != y[k])
            detail = []
            for k in changed[:2]:
                if isinstance(x[k], dict) and isinstance(y[k], dict):
                    fields = sorted(f for f in x[k].keys() | y[k].keys() if x[k].get(f) != y[k].get(f))
                    detail.append(f"{Path(str(k)).name}: " + ", ".join(
                        f"{f} {_short(x[k].get(f))}->{_short(y[k].get(f))}" for f in fields[:3]))
                else:
                    detail.append(f"{Path(str(k)).name}: {_short(x[k])}->{_short(y[k])}")
            out.append(f"{key}: only before {[Path(str(k)).name for k in only_x][:4]}, only after "
                       f"{[Path(str(k)).name for k in only_y][:4]}, changed {len(changed)} ({'; '.join(detail)})")
        else:
            out.append(f"{key}: {x!r} -> {y!r}")
    return out


# ---- the fork server -----------------------------------------------------------------------------------------------

# Imported once in the server so that each forked step starts in milliseconds, not in the ~5 s these take.
WARM = ("imgsearch.ui.cli", "imgsearch.ui.services.doctor", "imgsearch.ui.services.training",
        "imgsearch.ui.services.backup", "imgsearch.ui.services.restore", "imgsearch.ui.services.label_review",
        "imgsearch.ingest.pipeline", "imgsearch.ingest.curation", "imgsearch.models.persistence",
        "imgsearch.models.experiment", "imgsearch.search.faiss_index", "imgsearch.search.qdrant_edge",
        "imgsearch.search.edge_owner", "imgsearch.models.backbones", "imgsearch.ui.services.report",
        "imgsearch.models.embedding_map", "sklearn.svm", "sklearn.ensemble", "torchvision", "umap", "pynndescent")


def _warm_up() -> None:
    """Imports, and the training run's UMAP map once: numba compiles its functions on first use (~10 s here),
    and a forked child inherits them compiled."""
    import numpy as np

    for name in WARM:
        importlib.import_module(name)
    from imgsearch.models.embedding_map import compute

    x = np.random.default_rng(0).normal(size=(40, 192)).astype(np.float32)
    compute(np.arange(40), x / np.linalg.norm(x, axis=1, keepdims=True), 40)


def _child(request: dict[str, Any]) -> None:
    """In the forked child: one step, its output into request['log'], its result into request['result']."""
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(request.get("env", {}))
    code, result = 0, None
    try:
        if request["op"] == "cli":
            counters = [Counter(name, *resolve(name)) for name in request.get("count", [])]
            kill = request.get("kill")
            if kill:
                target, predicate = resolve(kill["name"])
                counters.append(Counter(kill["name"], target, predicate, kill["nth"], kill.get("after", False)))
            code = run_cli(request["args"], counters)
            result = {"counts": {c.name: c.calls for c in counters},
                      "labels": {c.name: c.labels for c in counters if any(c.labels)}}
        elif request["op"] == "snapshot":
            result = snapshot(request["data_dir"], request.get("stores", True))
        elif request["op"] == "expire_leases":
            result = expire_leases(request["data_dir"])
        else:
            raise ValueError(f"unknown op {request['op']!r}")
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 99
    with open(request["result"], "w") as f:
        json.dump({"code": code, "result": result}, f)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


STEP_TIMEOUT_S = 300.0  # one step of a cell; a child still running then is killed and reported, not waited on


def serve() -> None:
    """Read one JSON request a line on stdin, fork a child for it, answer one JSON line on stdout."""
    # The answers get their own copy of stdout; whatever else prints (the warm-up's libraries) goes to stderr.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    _warm_up()
    answers.write(json.dumps({"ready": True}) + "\n")
    answers.flush()
    for line in sys.stdin:
        request = json.loads(line)
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(request)
        reply: dict[str, Any] = {}
        deadline = t + request.get("timeout", STEP_TIMEOUT_S)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                reply["timeout"] = True
                break
            time.sleep(0.01)
        reply["seconds"] = round(time.perf_counter() - t, 2)
        if os.WIFSIGNALED(status) and not reply.get("timeout"):
            reply["signal"] = os.WTERMSIG(status)
        elif not os.WIFSIGNALED(status):
            reply["code"] = os.WEXITSTATUS(status)
            with contextlib.suppress(OSError, ValueError):
                reply.update(json.loads(Path(request["result"]).read_text()))
        answers.write(json.dumps(reply) + "\n")
        answers.flush()


class Server:
    """The fork server, seen from the test or the table: `call(request)` -> reply."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = env or {}
        self.n = 0
        root = Path(__file__).resolve().parents[2]
        with open(self.workdir / "server.log", "ab") as log:  # the warm-up's noise, and any crash of the server
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.faults.crashpoint", "--serve"], cwd=root,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                         env={**os.environ, **base_env()})
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError("the crash-point fork server did not start")

    def call(self, op: str, log: Path, env: dict[str, str] | None = None, **request: Any) -> dict[str, Any]:
        self.n += 1
        result = self.workdir / f"result-{self.n}.json"
        request = {"op": op, "log": str(log), "result": str(result), "env": {**self.env, **(env or {})}, **request}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError("the crash-point fork server died")
        return json.loads(reply)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def base_env() -> dict[str, str]:
    # numba's default OpenMP threading layer refuses to run in a forked child of a process that used it (the
    # server's warm-up UMAP); its own thread pool, workqueue, is fork-safe.
    return {"NUMBA_THREADING_LAYER": "workqueue", "IMGSEARCH_BACKBONE": TEST_BACKBONE, "IMGSEARCH_NUM_WORKERS": "0",
            "IMGSEARCH_K_CLUSTERS": "3", "IMGSEARCH_STORE_BATCH": "2", "IMGSEARCH_BATCH_SIZE": "2"}


# ---- the commands and how each cell is judged -----------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    template: Path  # a trained data dir: 3 classes x 6 images
    photos: Path  # what it was trained on
    extra: Path  # new images for `ingest`
    backup: Path  # a backup of the template, for `restore`
    ids: dict[str, int] = field(default_factory=dict)  # the template's catalogue ids by path


@dataclass(frozen=True)
class Scenario:
    name: str
    args: Callable[[Paths, Path], list[str]]  # (paths, the cell's folder) -> CLI args, --data-dir added
    rerun: Callable[[Paths, Path], list[str]] | None = None  # its job is to be run again after a crash
    empty_base: bool = False  # starts from an empty data dir (restore), not from the template
    backup_out: bool = False  # writes a backup into <cell>/backup, judged by restoring it
    # commands run on the copied template before the state "before" is read (the undo list's removals)
    setup: Callable[[Paths, Path], list[list[str]]] | None = None


REMOVED = ("apples/apples_005.jpg", "grass/grass_000.jpg")  # apples_005 represents its near-duplicate group
RELABELLED = ("sky/sky_001.jpg", "sky/sky_002.jpg")

SCENARIOS = {s.name: s for s in (
    Scenario("ingest", lambda p, c: ["ingest", str(p.extra)], rerun=lambda p, c: ["ingest", str(p.extra)]),
    Scenario("remove", lambda p, c: ["remove", *(str(p.photos / r) for r in REMOVED)]),
    Scenario("relabel", lambda p, c: ["relabel", "grass", *(str(p.ids[str(p.photos / r)]) for r in RELABELLED)]),
    # A stricter threshold than the template's ingest used: the per-class groups break up, every row changes.
    Scenario("duplicates", lambda p, c: ["duplicates", "--threshold", "0.999", "--json"]),
    # Another K than the template's 3: the refit changes every cluster, so the refresh of payloads shows.
    Scenario("train", lambda p, c: ["train", "--k", "4"], rerun=lambda p, c: ["train", "--k", "4"]),
    Scenario("backup", lambda p, c: ["backup", str(c / "backup")], backup_out=True),
    Scenario("restore", lambda p, c: ["restore", str(p.backup)], rerun=lambda p, c: ["restore", "--force",
                                                                                    str(p.backup)],
             empty_base=True),
    # The undo list (ingest/undo.py): the removed images put back, or forgotten for good.
    Scenario("unremove", lambda p, c: ["removed", *(a for r in REMOVED
                                                    for a in ("--restore", str(p.ids[str(p.photos / r)])))],
             setup=lambda p, c: [["remove", *(str(p.photos / r) for r in REMOVED)]]),
    Scenario("empty-removed", lambda p, c: ["removed", "--empty", "--yes"],
             setup=lambda p, c: [["remove", *(str(p.photos / r) for r in REMOVED)]]),
)}


@dataclass
class Cell:
    command: str
    point: str
    nth: int
    of: int
    after: bool = False
    label: str = ""  # the file that call writes, if any
    outcome: str = ""
    doctor: str = ""  # doctor's verdict right after the kill
    steps: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome in OUTCOMES_OK

    @property
    def where(self) -> str:
        label = f" ({self.label})" if self.label else ""
        return f"{'after' if self.after else 'before'} {self.point} #{self.nth}/{self.of}{label}"


@dataclass
class Harness:
    """The fork server, the template data dir and each command's reference states (before, and after a clean run)."""

    server: Server
    paths: Paths
    root: Path
    env_for: Callable[[Path], dict[str, str]] = lambda data_dir: {}
    copy: Callable[[Path, Path], None] = lambda src, dst: subprocess.run(
        ["cp", "-a", "--sparse=always", str(src), str(dst)], check=True)
    before: dict[str, dict] = field(default_factory=dict)
    after: dict[str, dict] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    labels: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    n: int = 0

    def cell_dir(self, name: str) -> Path:
        self.n += 1
        d = self.root / f"{self.n:03d}-{name}"
        d.mkdir(parents=True)
        return d

    def base(self, scenario: Scenario, cell: Path) -> Path:
        data = cell / "data"
        if not scenario.empty_base:
            self.copy(self.paths.template, data)
        for args in scenario.setup(self.paths, cell) if scenario.setup is not None else []:
            reply = self.cli(args, data, cell, "setup")
            if reply.get("code") != 0:
                raise RuntimeError(f"setup {args} failed ({reply}): {(cell / 'setup.log').read_text()[-3000:]}")
        return data

    def cli(self, args: list[str], data: Path, cell: Path, log: str, **request: Any) -> dict[str, Any]:
        return self.server.call("cli", cell / f"{log}.log", env=self.env_for(data),
                                args=[*args, "--data-dir", str(data)], **request)

    def state(self, data: Path, cell: Path, stores: bool = True) -> dict[str, Any]:
        reply = self.server.call("snapshot", cell / "snapshot.log", env=self.env_for(data), data_dir=str(data),
                                 stores=stores)
        if reply.get("code") != 0:
            raise RuntimeError(f"snapshot of {data} failed: {(cell / 'snapshot.log').read_text()[-2000:]}")
        return reply["result"]

    def prepare(self, name: str) -> dict[str, int]:
        """A clean run of `name`, counting every kill point: the reference state and the counts."""
        scenario = SCENARIOS[name]
        cell = self.cell_dir(f"{name}-reference")
        data = self.base(scenario, cell)
        self.before[name] = self.state(data, cell) if not scenario.empty_base else {}
        reply = self.cli(scenario.args(self.paths, cell), data, cell, "command", count=list(KILL_POINTS))
        if reply.get("code") != 0:
            raise RuntimeError(f"{name} failed without a kill ({reply}): {(cell / 'command.log').read_text()[-3000:]}")
        self.counts[name] = {k: v for k, v in reply["result"]["counts"].items() if v}
        self.labels[name] = reply["result"]["labels"]
        self.after[name] = self.judged_state(scenario, data, cell)
        return self.counts[name]

    def judged_state(self, scenario: Scenario, data: Path, cell: Path) -> dict[str, Any]:
        if not scenario.backup_out:
            return self.state(data, cell)
        # A backup is judged by what it restores to (through `imgsearch restore`, which also checks it).
        restored = cell / "restored"
        reply = self.cli(["restore", str(cell / "backup")], restored, cell, "restore-backup")
        if reply.get("code") not in (0, 1):
            return {"backup": "refused", "data": self.state(data, cell)}
        return {"backup": "restores", **self.state(restored, cell), "data": self.state(data, cell)}

    def run_cell(self, command: str, point: str, nth: int, after: bool = False) -> Cell:
        scenario = SCENARIOS[command]
        cell_info = Cell(command, point, nth, self.counts[command].get(point, 0), after)
        names = self.labels[command].get(point, [])
        cell_info.label = names[nth - 1] if 0 < nth <= len(names) else ""
        cell = self.cell_dir(f"{command}-{point}-{nth}{'-after' if after else ''}")
        data = self.base(scenario, cell)
        killed = self.cli(scenario.args(self.paths, cell), data, cell, "command",
                          kill={"name": point, "nth": nth, "after": after})
        if killed.get("signal") != signal.SIGKILL:
            cell_info.outcome = "not killed"
            cell_info.detail.append(f"the command ended ({killed}) before call {nth} of {point}")
            return cell_info
        # The point of no return: had the catalogue, the store of record, taken the effect before the kill?
        committed = True
        if scenario.backup_out:
            committed = (cell / "backup" / "MANIFEST.json").exists()
        elif not scenario.empty_base:
            at_kill = self.state(data, cell, stores=False)
            before = self.before[command]
            committed = (at_kill["rows"], at_kill["models"]) != (before["rows"], before["models"])
            if at_kill["running_runs"]:
                self.server.call("expire_leases", cell / "snapshot.log", env=self.env_for(data), data_dir=str(data))
        first = self.cli(["doctor"], data, cell, "doctor")
        cell_info.doctor = _verdict(first)
        final = first
        if first.get("code") != 0:
            # --repair ends with doctor's check again, and exits 1 if the stores still disagree.
            final = self.cli(["doctor", "--repair"], data, cell, "repair")
            cell_info.steps.append(f"repair ({_verdict(final)})")
        if scenario.rerun is not None:
            again = self.cli(scenario.rerun(self.paths, cell), data, cell, "rerun")
            cell_info.steps.append(f"rerun (exit {again.get('code', again.get('signal'))})")
            final = self.cli(["doctor"], data, cell, "doctor-final")
        self.classify(cell_info, scenario, self.judged_state(scenario, data, cell), committed, final.get("code") == 0)
        return cell_info

    def classify(self, cell: Cell, scenario: Scenario, end: dict, committed: bool, agrees: bool) -> None:
        """Outcome from the end state: its problems (disagreements), then its effect against before and after."""
        before, after = self.before[scenario.name], self.after[scenario.name]
        keys = ["rows", "models", "qdrant", "faiss", "search"]
        if scenario.empty_base or scenario.backup_out:
            keys = keys[:4]  # a restored data dir has no feature cache to search with
        if scenario.backup_out:
            # The data dir must be untouched; the backup either restores to it, or is refused as incomplete.
            problems = list(end["data"]["problems"])
            if comparable(end["data"]) != comparable(before):
                effect = "mixed"
                cell.detail += ["data dir: " + d for d in diff_states(before, end["data"], keys)]
            elif end["backup"] == "refused":
                effect = "undone" if committed else "rolled back"
                cell.detail.append("restore refuses the backup (it has no manifest); the data dir is as before")
            else:
                problems += [f"restored backup: {p}" for p in end["problems"]]
                effect = "finished" if comparable(end, keys) == comparable(before, keys) else "mixed"
                if effect == "mixed":
                    cell.detail += ["restored backup: " + d for d in diff_states(before, end, keys)]
        else:
            problems = list(end["problems"])
            if comparable(end, keys) == comparable(after, keys):
                effect = "finished"
            elif before and comparable(end, keys) == comparable(before, keys):
                # Back where it started: right if the catalogue never had the effect; a command meant to be run
                # again (ingest, train, restore) should have finished.
                effect = "undone" if committed or scenario.rerun else "rolled back"
                cell.detail.append("the state is as before the command")
            else:
                effect = "incomplete" if committed else "mixed"
                cell.detail += diff_states(after, end, keys)
        if problems:
            cell.outcome = "silently inconsistent" if agrees else "not repaired"
            cell.detail[:0] = problems[:4]
            if effect not in OUTCOMES_OK:
                cell.outcome += f", {effect}"
        else:
            cell.outcome = effect


def _verdict(reply: dict[str, Any]) -> str:
    if reply.get("timeout"):
        return f"hung (killed after {STEP_TIMEOUT_S:.0f} s)"
    code = reply.get("code")
    if code == 99:  # _child's own code: an exception escaped the entry point
        return "traceback"
    return {0: "agree", 1: "problem"}.get(code, f"exit {code if code is not None else reply.get('signal')}")


def pick(count: int, all_n: bool = False) -> list[int]:
    """Which calls to kill at: every one, or the first, a middle one and the last."""
    if all_n:
        return list(range(1, count + 1))
    return sorted({1, (count + 1) // 2, count}) if count else []


def last_write(counts: dict[str, int]) -> str | None:
    """The point whose last call is the command's last write: its last commit, else (backup) its last file write."""
    return next((p for p in ("commit", "atomic_write") if counts.get(p)), None)


def cells_of(counts: dict[str, int], all_n: bool = False) -> list[tuple[str, int, bool]]:
    """(kill point, n, after) for one command: before every counted call chosen by `pick`, and right after its
    last write (the command is done but for what follows it)."""
    out = [(point, n, False) for point in KILL_POINTS if point in counts for n in pick(counts[point], all_n)]
    last = last_write(counts)
    if last is not None:
        out.append((last, counts[last], True))
    return out


# ---- building the template, the table ------------------------------------------------------------------------------


def build_template(server: Server, root: Path, env_for: Callable[[Path], dict[str, str]] = lambda d: {}) -> Paths:
    """photos: 3 classes x 6 generated images; a trained data dir on them; 4 new images of a 4th class; a backup."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.conftest import write_dataset

    photos = write_dataset(root / "photos", per_class=6, seed=0)
    extra = write_dataset(root / "extra", per_class=4, seed=7,
                          classes={"sand": ((210, 190, 120), "h")})
    template, backup = root / "template", root / "template-backup"
    for args in (["train", "--data", str(photos)], ["backup", str(backup)]):
        reply = server.call("cli", root / "template.log", env=env_for(template),
                            args=[*args, "--data-dir", str(template)])
        if reply.get("code") != 0:
            raise RuntimeError(f"building the template failed: {(root / 'template.log').read_text()[-3000:]}")
    reply = server.call("snapshot", root / "template.log", env=env_for(template), data_dir=str(template), stores=False)
    return Paths(template=template, photos=photos, extra=extra, backup=backup, ids=reply["result"]["ids"])


def table(cells: Sequence[Cell]) -> str:
    lines = ["| command | kill point | doctor after the kill | then | outcome |", "|---|---|---|---|---|"]
    for c in cells:
        outcome = f"**{c.outcome}**" if not c.ok else c.outcome
        if c.detail and not c.ok:
            detail = c.detail[0] if len(c.detail[0]) <= 200 else c.detail[0][:197] + "..."
            outcome += f" (+{len(c.detail) - 1} more)" if len(c.detail) > 1 else ""
            outcome += ": " + detail.replace("|", "/")
        lines.append(f"| {c.command} | {c.where} | {c.doctor or '—'} | {', '.join(c.steps) or '—'} | {outcome} |")
    return "\n".join(lines)


@contextlib.contextmanager
def harness(root: Path) -> Iterator[Harness]:
    root.mkdir(parents=True, exist_ok=True)
    with Server(root / "server") as server:
        paths = build_template(server, root)
        yield Harness(server, paths, root / "cells")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.crashpoint", description=__doc__.split("\n")[0])
    parser.add_argument("--kill-at", help="function to kill at: a KILL_POINTS name, module:attr or module:Class.meth")
    parser.add_argument("--nth", type=int, default=1, help="kill at this call (1 = the first)")
    parser.add_argument("--after", action="store_true", help="kill right after the call returns, not before it")
    parser.add_argument("--count", action="append", default=[], help="count the calls of this function (repeatable; "
                        "'all' = every KILL_POINTS name); the counts go to stderr as JSON at the end")
    parser.add_argument("--table", action="store_true", help="run every cell, print the Markdown table")
    parser.add_argument("--all-n", action="store_true", help="with --table: kill at every call, not first/middle/last")
    parser.add_argument("--commands", default=",".join(SCENARIOS), help="with --table: which commands")
    parser.add_argument("--workdir", type=Path, help="with --table: where the data dirs go (default: a temp dir)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help="the imgsearch command line, after --")
    opts = parser.parse_args(argv)
    if opts.serve:
        serve()
        return 0
    if opts.table:
        return _print_table(opts)
    names = list(KILL_POINTS) if "all" in opts.count else opts.count
    counters = [Counter(n, *resolve(n)) for n in names]
    if opts.kill_at:
        counters.append(Counter(opts.kill_at, *resolve(opts.kill_at), kill_at=opts.nth, after=opts.after))
    try:
        code = run_cli(opts.args, counters)
    finally:
        if names:
            print(json.dumps({c.name: c.calls for c in counters if c.kill_at is None}), file=sys.stderr)
    if opts.kill_at:
        print(f"crashpoint: {opts.kill_at} was called {counters[-1].calls} times, never a call {opts.nth}",
              file=sys.stderr)
    return code


def _print_table(opts: argparse.Namespace) -> int:
    import tempfile

    root = opts.workdir or Path(tempfile.mkdtemp(prefix="crashpoints-"))
    t0 = time.perf_counter()
    cells: list[Cell] = []
    with harness(root) as h:
        for command in opts.commands.split(","):
            counts = h.prepare(command)
            print(f"{command}: {counts}", file=sys.stderr, flush=True)
            for point, n, after in cells_of(counts, opts.all_n):
                cell = h.run_cell(command, point, n, after)
                print(f"  {cell.where}: {cell.outcome} {'; '.join(cell.detail[:1])}", file=sys.stderr, flush=True)
                cells.append(cell)
    bad = [c for c in cells if not c.ok]
    print(table(cells))
    print(f"\n{len(cells)} cells, {len(cells) - len(bad)} finished or rolled back, {len(bad)} not; "
          f"{time.perf_counter() - t0:.0f} s.")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
