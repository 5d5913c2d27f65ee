"""Query helpers for teaching sessions (`teach_examples`): one row per reviewed image of a label. Each takes a
Session and never commits."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from imgsearch.db.chunks import chunks
from imgsearch.db.models import TEACH_VERDICTS, Image, TeachExample, utcnow
from imgsearch.db.session import rows_matched


def set_verdicts(session: Session, label: str, image_ids: Iterable[int], verdict: str) -> None:
    """Record (or change) the verdict of images in the session of `label`."""
    if verdict not in TEACH_VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(TEACH_VERDICTS)}; got {verdict!r}")
    ids = sorted({int(i) for i in image_ids})
    now = utcnow()
    for chunk in chunks(ids):  # delete then insert: the same on SQLite and PostgreSQL
        session.execute(delete(TeachExample).where(TeachExample.label == label, TeachExample.image_id.in_(chunk)))
    session.add_all(TeachExample(label=label, image_id=i, verdict=verdict, created_at=now) for i in ids)
    session.flush()


def verdicts(session: Session, label: str) -> dict[int, str]:
    """{image id: verdict} of the session of `label`."""
    query = select(TeachExample.image_id, TeachExample.verdict).where(TeachExample.label == label)
    return {int(i): v for i, v in session.execute(query)}


def labelled_ids(session: Session, label: str) -> list[int]:
    """Ids of the images labelled `label` in the catalogue, by id."""
    return list(session.scalars(select(Image.id).where(Image.label == label).order_by(Image.id)))


def sessions(session: Session) -> list[tuple[str, dict[str, int]]]:
    """(label, {verdict: count}) of every teaching session, by label."""
    query = (select(TeachExample.label, TeachExample.verdict, func.count())
             .group_by(TeachExample.label, TeachExample.verdict).order_by(TeachExample.label))
    out: dict[str, dict[str, int]] = {}
    for label, verdict, n in session.execute(query):
        out.setdefault(label, {})[verdict] = int(n)
    return list(out.items())


def clear(session: Session, label: str) -> int:
    """End the session of `label` (its rows; the labels given stay). Returns how many rows were removed."""
    return rows_matched(session, delete(TeachExample).where(TeachExample.label == label))
