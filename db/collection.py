"""Read-only catalogue queries the app needs beyond db.repository: counts, distinct filter values, cluster tables."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, not_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from imgsearch.db.chunks import chunks
from imgsearch.db.models import Image, ImageTag, Run

CLUSTER_COLUMNS = {"kmeans": Image.kmeans_cluster, "agglomerative": Image.agglo_cluster}


# Payload key -> distinct values among the indexed images, sorted: the options of the app's filter widgets.
FilterChoices = dict[str, list]


def indexed_count(session: Session) -> int:
    return session.scalar(select(func.count(Image.id)).where(Image.status == "indexed")) or 0


def catalogue_signature(session: Session) -> tuple[int, int, int]:
    """(indexed images, newest image id, newest finished run id): changes after any ingest, train or remove."""
    n = indexed_count(session)
    newest_image = session.scalar(select(func.max(Image.id))) or 0
    newest_run = session.scalar(select(func.max(Run.id)).where(Run.outcome != "running")) or 0
    return n, newest_image, newest_run


def _distinct(session: Session, column) -> list:
    query = select(column).where(Image.status == "indexed", column.is_not(None)).distinct().order_by(column)
    return list(session.scalars(query))


def label_counts(session: Session) -> list[tuple[str | None, int]]:
    """(label, number of indexed images) per label, unlabelled as None, largest first."""
    n = func.count(Image.id)
    query = (select(Image.label, n).where(Image.status == "indexed").group_by(Image.label)
             .order_by(n.desc(), Image.label))
    return [(label, count) for label, count in session.execute(query)]


def label_examples(session: Session) -> dict[str, str]:
    """label -> the path of one indexed image with it (the first by id): a face for each class in tables."""
    first = select(Image.label, func.min(Image.id).label("id")).where(
        Image.status == "indexed", Image.label.is_not(None)).group_by(Image.label).subquery()
    rows = session.execute(select(first.c.label, Image.path).join(Image, Image.id == first.c.id))
    return {label: path for label, path in rows}


def filter_choices(session: Session, columns: Mapping[str, str]) -> FilterChoices:
    """Distinct values of catalogue columns among indexed images: `columns` maps a payload key to the
    `Image` attribute it comes from (`imgsearch.search.payload.list_filter_columns()` gives the schema's).
    For `tags`, the tags the images have (their broader terms filter too, but are not listed)."""
    return {key: distinct_tags(session) if attribute == "tags" else _distinct(session, getattr(Image, attribute))
            for key, attribute in columns.items()}


def distinct_tags(session: Session) -> list[str]:
    query = (select(ImageTag.tag).join(Image, Image.id == ImageTag.image_id).where(Image.status == "indexed")
             .distinct().order_by(ImageTag.tag))
    return list(session.scalars(query))


def image_tag_rows(session: Session) -> tuple[list[int], list[str], list[float]]:
    """(image ids, tags, probabilities), one entry per tag of every indexed image, by image id: what a tag search
    index is built from (search/text_query.py)."""
    rows = session.execute(
        select(ImageTag.image_id, ImageTag.tag, ImageTag.prob).join(Image, Image.id == ImageTag.image_id)
        .where(Image.status == "indexed").order_by(ImageTag.image_id, ImageTag.tag)
    ).all()
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def collection_files(session: Session, limit: int = 20_000) -> list[tuple[int, str]]:
    """(id, file name) of indexed images, by file name, for the query picker."""
    query = (
        select(Image.id, Image.file_name).where(Image.status == "indexed").order_by(Image.file_name, Image.id)
        .limit(limit)
    )
    return [(i, name) for i, name in session.execute(query)]


def tags_by_image(session: Session, ids: Sequence[int]) -> dict[int, list[tuple[str, float]]]:
    """image id -> its automatic tags (tag, probability), most probable first; images without tags are left out."""
    out: dict[int, list[tuple[str, float]]] = defaultdict(list)
    for chunk in chunks(sorted({int(i) for i in ids})):
        rows = session.execute(select(ImageTag.image_id, ImageTag.tag, ImageTag.prob)
                               .where(ImageTag.image_id.in_(chunk))
                               .order_by(ImageTag.image_id, ImageTag.prob.desc(), ImageTag.tag))
        for image_id, tag, prob in rows:
            out[image_id].append((tag, prob))
    return dict(out)


def cluster_summary(session: Session, algorithm: str, n_tags: int = 3, n_labels: int = 3) -> list[dict]:
    """One row per cluster: size, labelled count, dominant label and purity (dominant / labelled), by cluster;
    `top_labels`: its `n_labels` most common labels with their member counts (most first, ties by name) and
    `n_labels` how many distinct labels it has; `top_tags`: its `n_tags` most frequent automatic tags (by how many
    members have each). Together they name it (`ui.services.cluster_names.cluster_title`)."""
    column = CLUSTER_COLUMNS[algorithm]
    # Counted by the database, one row per (cluster, label): the collection's size never comes into Python.
    n = func.count(Image.id)
    rows = session.execute(
        select(column, Image.label, n).where(Image.status == "indexed", column.is_not(None))
        .group_by(column, Image.label).order_by(column, Image.label)
    )
    tags = _top_tags(session, column, n_tags)
    sizes: Counter[int] = Counter()
    labels: dict[int, Counter[str]] = defaultdict(Counter)
    for cluster, label, count in rows:
        assert cluster is not None  # the query's condition
        sizes[cluster] += count
        if label is not None:
            labels[cluster][label] += count
    out = []
    for cluster in sorted(sizes):
        counts = labels[cluster]
        labelled = sum(counts.values())
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        dominant, top = ranked[0] if ranked else (None, 0)
        out.append({"cluster": cluster, "size": sizes[cluster], "labelled": labelled, "dominant_label": dominant,
                    "purity": top / labelled if labelled else None, "top_labels": ranked[:n_labels],
                    "n_labels": len(ranked), "top_tags": tags.get(cluster, [])})
    return out


def _top_tags(session: Session, column, n_tags: int) -> dict[int, list[str]]:
    """cluster -> its n_tags most frequent tags, most frequent first (ties by name)."""
    n = func.count(ImageTag.image_id)
    rows = session.execute(
        select(column, ImageTag.tag, n).join(ImageTag, ImageTag.image_id == Image.id)
        .where(Image.status == "indexed", column.is_not(None)).group_by(column, ImageTag.tag)
    )
    counts: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for cluster, tag, count in rows:
        counts[cluster].append((-count, tag))
    return {cluster: [tag for _, tag in sorted(c)[:n_tags]] for cluster, c in counts.items()}


def cluster_members(
    session: Session, algorithm: str, cluster: int, limit: int = 12, offset: int = 0
) -> list[tuple[int, str, str]]:
    """(id, path, file name) of up to `limit` images of one cluster, by id, from the `offset`-th on."""
    column = CLUSTER_COLUMNS[algorithm]
    query = (
        select(Image.id, Image.path, Image.file_name)
        .where(Image.status == "indexed", column == cluster).order_by(Image.id).limit(limit).offset(offset)
    )
    return [(i, p, n) for i, p, n in session.execute(query)]


# Orders for browse(): the newest first, or the most confident prediction first.
BROWSE_ORDERS: dict[str, tuple[ColumnElement[Any] | InstrumentedAttribute[Any], ...]] = {
    "confidence": (Image.predicted_prob.desc().nulls_last(), Image.id),
    "newest": (Image.created_at.desc(), Image.id.desc()),
    "file name": (Image.file_name, Image.id)}


def browse(
    session: Session, conditions: Mapping[str, tuple[str, Any]], order: str = "confidence", limit: int = 20,
    offset: int = 0,
) -> tuple[int, list[Image]]:
    """(number of matches, one page of them): indexed images meeting every condition, without a query image.

    conditions: catalogue attribute -> ("any", accepted values) or ("min", lower bound), as the payload's filter
    fields define them (the caller translates; this layer knows only columns).
    """
    where = [Image.status == "indexed"]
    circle = None
    for attribute, (match, value) in conditions.items():
        if attribute == "tags":  # any of these tags (class names: search.text_query.tag_classes expands terms)
            where.append(Image.id.in_(select(ImageTag.image_id).where(ImageTag.tag.in_(list(value)))))
        elif match == "range":
            where.append(_taken_between(session, *value))
        elif match == "near" and isinstance(value, bool):
            placed = and_(Image.latitude.is_not(None), Image.longitude.is_not(None))
            where.append(placed if value else not_(placed))
        elif match == "near":
            circle = tuple(float(v) for v in value)
            where.append(_box_around(*circle))
        else:
            column = getattr(Image, attribute)
            where.append(column.in_(list(value)) if match == "any" else column >= value)
    ordered = select(Image.id).where(*where).order_by(*BROWSE_ORDERS[order])
    if circle is None:
        total = session.scalar(select(func.count()).select_from(Image).where(*where)) or 0
        rows = session.scalars(select(Image).where(*where).order_by(*BROWSE_ORDERS[order]).limit(limit)
                               .offset(offset))
        return total, list(rows)
    # Near a place: the box around the circle in SQL (portable: no trigonometry in SQLite), then the great-circle
    # distance of each candidate's position here; only one page of ids goes back to the database.
    lat, lon, radius = circle
    candidates = session.execute(ordered.add_columns(Image.latitude, Image.longitude))
    ids = [i for i, la, lo in candidates if haversine_km(lat, lon, la, lo) <= radius]
    page = ids[offset : offset + limit]
    found = {row.id: row for row in session.scalars(select(Image).where(Image.id.in_(page)))} if page else {}
    return len(ids), [found[i] for i in page]


EARTH_RADIUS_KM = 6371.0  # as search/payload.py's (and Qdrant's geo_radius): every path draws the same circle


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points in decimal degrees (search/payload.py has the same; this layer
    imports no other package)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _box_around(lat: float, lon: float, radius_km: float):
    """A condition every position within radius_km of (lat, lon) meets: a latitude band, and a longitude band
    where it is narrower than the whole circle of latitude (not near a pole; across the antimeridian, two)."""
    dlat = math.degrees(radius_km / EARTH_RADIUS_KM)
    band = and_(Image.latitude.is_not(None), Image.longitude.is_not(None),
                Image.latitude.between(lat - dlat, lat + dlat))
    if abs(lat) + dlat >= 89.0 or radius_km >= EARTH_RADIUS_KM:
        return band
    dlon = math.degrees(math.asin(min(1.0, math.sin(radius_km / EARTH_RADIUS_KM) / math.cos(math.radians(lat)))))
    if dlon >= 180:
        return band
    west, east = lon - dlon, lon + dlon
    if west < -180:
        lons = or_(Image.longitude >= west + 360, Image.longitude <= east)
    elif east > 180:
        lons = or_(Image.longitude >= west, Image.longitude <= east - 360)
    else:
        lons = Image.longitude.between(west, east)
    return and_(band, lons)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _taken_between(session: Session, low: float | None, high: float | None):
    """low <= taken_local < high, in seconds of the photos' own clocks (search/payload.py's taken_at): for each
    UTC offset in the catalogue, a range of the indexed `taken_at` column shifted by that offset."""
    offset = func.coalesce(Image.taken_at_offset, 0)
    offsets = session.scalars(select(offset).where(Image.taken_at.is_not(None)).distinct())
    parts = []
    for minutes in offsets:
        shift = timedelta(minutes=minutes)
        bounds = [offset == minutes]
        if low is not None:
            bounds.append(Image.taken_at >= _EPOCH + timedelta(seconds=low) - shift)
        if high is not None:
            bounds.append(Image.taken_at < _EPOCH + timedelta(seconds=high) - shift)
        parts.append(and_(*bounds))
    return or_(*parts) if parts else false()


def taken_days(session: Session) -> tuple[date, date] | None:
    """(the first, the last) day an indexed photo was taken on, on the photos' own clocks; None without dates."""
    offset = func.coalesce(Image.taken_at_offset, 0)
    rows = session.execute(select(offset, func.min(Image.taken_at), func.max(Image.taken_at))
                           .where(Image.status == "indexed", Image.taken_at.is_not(None)).group_by(offset)).all()
    if not rows:
        return None
    first = min(_naive(low) + timedelta(minutes=m) for m, low, _ in rows if low is not None)  # none is: the query
    last = max(_naive(high) + timedelta(minutes=m) for m, _, high in rows if high is not None)
    return first.date(), last.date()


def _naive(value: datetime | str) -> datetime:
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def labelled_split(session: Session, split: str) -> list[tuple[str, str]]:
    """(content hash, label) of the labelled images a training run put in `split` ('train' or 'val')."""
    query = select(Image.content_hash, Image.label).where(Image.split == split, Image.label.is_not(None))
    return [(h, label) for h, label in session.execute(query.order_by(Image.id)) if label is not None]  # all are


def duplicate_groups(session: Session, limit: int = 500) -> list[tuple[int, list[Image]]]:
    """(group, its indexed member rows by id) for near-duplicate groups of two or more, largest first."""
    n = func.count(Image.id)
    groups = list(session.execute(
        select(Image.duplicate_group, n).where(Image.status == "indexed", Image.duplicate_group.is_not(None))
        .group_by(Image.duplicate_group).having(n > 1).order_by(n.desc(), Image.duplicate_group).limit(limit)))
    members: dict[int, list[Image]] = defaultdict(list)
    ids = [g for g, _ in groups if g is not None]  # all are: the query's condition
    for start in range(0, len(ids), 500):
        query = select(Image).where(Image.duplicate_group.in_(ids[start : start + 500]), Image.status == "indexed")
        for image in session.scalars(query.order_by(Image.id)):
            assert image.duplicate_group is not None  # one of `ids`
            members[image.duplicate_group].append(image)
    return [(g, members[g]) for g in ids]


def label_suspects(session: Session, limit: int = 50) -> list[Image]:
    """Labelled images whose recorded label review (`imgsearch suspects`) suggests another label, most suspect
    (lowest label_score) first."""
    query = (select(Image).where(Image.status == "indexed", Image.label_score.is_not(None),
                                 Image.suggested_label.is_not(None), Image.suggested_label != Image.label)
             .order_by(Image.label_score, Image.id).limit(limit))
    return list(session.scalars(query))


def folder_counts(session: Session) -> list[tuple[str, int]]:
    """(source folder, number of indexed images) per folder, by folder: the collection browser's folders."""
    n = func.count(Image.id)
    query = (select(Image.source_folder, n).where(Image.status == "indexed").group_by(Image.source_folder)
             .order_by(Image.source_folder))
    return [(folder, count) for folder, count in session.execute(query)]


def first_indexed_id(session: Session) -> int | None:
    """The indexed image first by file name (the query picker's default), without listing them all."""
    return session.scalar(select(Image.id).where(Image.status == "indexed").order_by(Image.file_name, Image.id)
                          .limit(1))


def random_indexed_id(session: Session) -> int | None:
    """One indexed image, drawn by the database (no id list comes to Python)."""
    return session.scalar(select(Image.id).where(Image.status == "indexed").order_by(func.random()).limit(1))
