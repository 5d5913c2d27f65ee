"""Fixtures: a migrated catalogue (the SQLite file in a temp folder, or on the PostgreSQL pass a fresh database)
and sessions on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db.session import init_db, make_engine, session_factory
from tests import databases


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "imgsearch.db"


@pytest.fixture
def db_url(db_path: Path) -> str:
    """The catalogue's URL: the SQLite file at db_path, or the PostgreSQL database of its data dir."""
    return databases.ACTIVE.url_for(db_path.parent) if databases.ACTIVE else f"sqlite:///{db_path}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def session(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as session:
        yield session
