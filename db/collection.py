"""Read-only catalogue queries the app needs beyond db.repository: counts, distinct filter values, cluster tables."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

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


def cluster_summary(session: Session, algorithm: str, n_tags: int = 3) -> list[dict]:
    """One row per cluster: size, labelled count, dominant label and purity (dominant / labelled), by cluster;
    `top_tags`: its `n_tags` most frequent automatic tags (by how many members have each), which name a cluster
    without labels (`cluster_title`)."""
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
        sizes[cluster] += count
        if label is not None:
            labels[cluster][label] += count
    out = []
    for cluster in sorted(sizes):
        counts = labels[cluster]
        labelled = sum(counts.values())
        dominant, top = counts.most_common(1)[0] if counts else (None, 0)
        out.append({"cluster": cluster, "size": sizes[cluster], "labelled": labelled, "dominant_label": dominant,
                    "purity": top / labelled if labelled else None, "top_tags": tags.get(cluster, [])})
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


def cluster_title(row: Mapping) -> str | None:
    """What to call a `cluster_summary` row: its dominant label, else its most frequent tags ("tabby, tiger cat,
    Egyptian cat"), else None (the caller numbers it)."""
    if row.get("dominant_label") is not None:
        return row["dominant_label"]
    return ", ".join(row.get("top_tags") or []) or None


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
BROWSE_ORDERS = {"confidence": (Image.predicted_prob.desc().nulls_last(), Image.id),
                 "newest": (Image.created_at.desc(), Image.id.desc()),
                 "file name": (Image.file_name, Image.id)}


def browse(
    session: Session, conditions: Mapping[str, tuple[str, object]], order: str = "confidence", limit: int = 20,
    offset: int = 0,
) -> tuple[int, list[Image]]:
    """(number of matches, one page of them): indexed images meeting every condition, without a query image.

    conditions: catalogue attribute -> ("any", accepted values) or ("min", lower bound), as the payload's filter
    fields define them (the caller translates; this layer knows only columns).
    """
    where = [Image.status == "indexed"]
    for attribute, (match, value) in conditions.items():
        if attribute == "tags":  # any of these tags (class names: search.text_query.tag_classes expands terms)
            where.append(Image.id.in_(select(ImageTag.image_id).where(ImageTag.tag.in_(list(value)))))
            continue
        column = getattr(Image, attribute)
        where.append(column.in_(list(value)) if match == "any" else column >= value)
    total = session.scalar(select(func.count()).select_from(Image).where(*where)) or 0
    rows = session.scalars(select(Image).where(*where).order_by(*BROWSE_ORDERS[order]).limit(limit).offset(offset))
    return total, list(rows)


def labelled_split(session: Session, split: str) -> list[tuple[str, str]]:
    """(content hash, label) of the labelled images a training run put in `split` ('train' or 'val')."""
    query = select(Image.content_hash, Image.label).where(Image.split == split, Image.label.is_not(None))
    return [(h, label) for h, label in session.execute(query.order_by(Image.id))]


def duplicate_groups(session: Session, limit: int = 500) -> list[tuple[int, list[Image]]]:
    """(group, its indexed member rows by id) for near-duplicate groups of two or more, largest first."""
    n = func.count(Image.id)
    groups = list(session.execute(
        select(Image.duplicate_group, n).where(Image.status == "indexed", Image.duplicate_group.is_not(None))
        .group_by(Image.duplicate_group).having(n > 1).order_by(n.desc(), Image.duplicate_group).limit(limit)))
    members: dict[int, list[Image]] = defaultdict(list)
    ids = [g for g, _ in groups]
    for start in range(0, len(ids), 500):
        query = select(Image).where(Image.duplicate_group.in_(ids[start : start + 500]), Image.status == "indexed")
        for image in session.scalars(query.order_by(Image.id)):
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
