"""The catalogue database the test suite runs on: SQLite (the default) or a throw-away PostgreSQL cluster.

`IMGSEARCH_TEST_DATABASE=postgresql pytest` runs the whole suite on PostgreSQL: a session fixture (tests/conftest.py)
starts a private cluster with Debian's initdb + pg_ctl in a temp folder, reachable only through a Unix socket, and
every data directory gets its own database, made on first use: the same one-catalogue-per-data-dir the SQLite file
gives, so tests, session-wide collections and `copy_store` need not know which database they run on. Without the
PostgreSQL binaries that pass is skipped with the reason, unless IMGSEARCH_REQUIRE_POSTGRESQL=1 (CI) makes it an error.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

BACKENDS = ("sqlite", "postgresql")
SERVER_USER = "postgres"  # initdb refuses to run as root: as root, the cluster is run by this (Debian's) user
# Durability is not what the tests check, and fsync per commit would cost minutes over the suite.
SERVER_OPTIONS = ("-c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                  "-c max_connections=300")


def backend() -> str:
    """The database this test session runs on, from IMGSEARCH_TEST_DATABASE (default sqlite)."""
    name = os.environ.get("IMGSEARCH_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
    if name in ("postgres", "pg"):
        name = "postgresql"
    if name not in BACKENDS:
        raise ValueError(f"IMGSEARCH_TEST_DATABASE={name!r}: choose {' or '.join(BACKENDS)}")
    return name


def find_bindir() -> Path | None:
    """The folder with initdb and pg_ctl: IMGSEARCH_PG_BINDIR when set (only there), else PATH, else Debian's
    /usr/lib/postgresql/<version>/bin, newest first."""
    if os.environ.get("IMGSEARCH_PG_BINDIR"):
        candidates = [os.environ["IMGSEARCH_PG_BINDIR"]]
    else:
        on_path = shutil.which("initdb")
        candidates = [str(Path(on_path).parent)] if on_path else []
        versions = glob.glob("/usr/lib/postgresql/*/bin")
        candidates += sorted(versions, key=lambda p: [int(n) for n in Path(p).parent.name.split(".") if n.isdigit()],
                             reverse=True)
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


class Cluster:
    """A private PostgreSQL cluster in a temp folder: socket only, trust authentication; stop() deletes it."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="imgsearch-pg-"))
        self.pgdata = self.root / "data"
        self.socket_dir = self.root  # Unix sockets have a ~100-byte path limit: keep it short
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError as exc:
                raise RuntimeError(f"running as root, and there is no {SERVER_USER!r} user to run PostgreSQL "
                                   "(initdb refuses root): install Debian's postgresql package, or run as a "
                                   "normal user") from exc
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", SERVER_USER, "--"]
        os.chmod(self.root, 0o755)  # the socket must be reachable by the tests' user

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self._as_user, *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr or result.stdout}")

    def start(self) -> Cluster:
        self._run(str(self.bindir / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "-o", f"{SERVER_OPTIONS} -c unix_socket_directories='{self.socket_dir}'", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def execute(self, *statements: str) -> None:
        """Run statements on the maintenance database, outside a transaction (CREATE/DROP DATABASE need that)."""
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), user="postgres", dbname="postgres", autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)


class Databases:
    """One database per data directory on a Cluster, made on first use; dropped when their test ends."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.made: dict[str, Path] = {}  # database name -> its data dir

    @staticmethod
    def name_for(data_dir: Path) -> str:
        return "t_" + hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:24]

    def url_for(self, data_dir: Path) -> str:
        name = self.name_for(data_dir)
        if name not in self.made:
            self.cluster.execute(f'CREATE DATABASE "{name}"')
            self.made[name] = Path(data_dir).resolve()
        return self.cluster.url(name)

    def clone(self, src_dir: Path, dst_dir: Path) -> None:
        """dst_dir's database becomes a copy of src_dir's (`copy_store` of a data dir copies its catalogue too)."""
        src, dst = self.name_for(src_dir), self.name_for(dst_dir)
        if src not in self.made:
            return
        self.drop([dst])
        # CREATE DATABASE ... TEMPLATE needs the source idle: its sessions are ended (pooled connections are pinged
        # before reuse, so their engines just reconnect).
        self.cluster.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{src}'",
                             f'CREATE DATABASE "{dst}" TEMPLATE "{src}"')
        self.made[dst] = Path(dst_dir).resolve()

    def drop(self, names) -> None:
        for name in list(names):
            self.made.pop(name, None)
            self.cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_under(self, folder: Path) -> None:
        """Drop the databases of data dirs inside `folder` (a finished test's tmp_path)."""
        folder = Path(folder).resolve()
        self.drop([name for name, data_dir in self.made.items() if data_dir.is_relative_to(folder)])


ACTIVE: Databases | None = None  # set by the session fixture on the PostgreSQL pass


def database_env(data_dir: Path) -> dict[str, str]:
    """Environment for a subprocess working on `data_dir`: its database's IMGSEARCH_DATABASE_URL on the PostgreSQL
    pass (in this process the fixture routes Settings.db_url), nothing on SQLite (the file in the data dir)."""
    return {} if ACTIVE is None else {"IMGSEARCH_DATABASE_URL": ACTIVE.url_for(Path(data_dir))}


def on_postgresql() -> bool:
    return ACTIVE is not None
