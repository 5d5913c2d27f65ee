"""db.collection.filter_choices reads every list-filtered payload field of the schema from its catalogue column."""

from __future__ import annotations

from imgsearch.db import collection
from imgsearch.db import repository as repo
from imgsearch.db.models import Image
from imgsearch.search.payload import FILTER_FIELDS, PayloadField, list_filter_columns
from imgsearch.ui.services.cluster_names import cluster_title


def _catalogue(session) -> None:
    rows = [  # (label, predicted, kmeans, agglo, folder, status)
        ("cat", "cat", 2, 0, "/photos/b", "indexed"),
        ("dog", "cat", 0, 1, "/photos/a", "indexed"),
        (None, "dog", 2, None, "/photos/a", "indexed"),
        ("zebra", "zebra", 9, 9, "/photos/z", "pending"),  # not in the stores yet: not offered
    ]
    for n, (label, predicted, kmeans, agglo, folder, status) in enumerate(rows):
        image = repo.add_image(session, content_hash=f"{n:064x}", path=f"{folder}/{n}.jpg", file_name=f"{n}.jpg",
                               width=4, height=4, size_bytes=10, source_folder=folder, label=label, status=status)
        repo.update_images(session, [{"id": image.id, "predicted_label": predicted, "predicted_prob": 0.5,
                                      "kmeans_cluster": kmeans, "agglo_cluster": agglo}])
    session.commit()


EXPECTED = {
    "label": ["cat", "dog"],
    "predicted_label": ["cat", "dog"],
    "kmeans_cluster": [0, 2],
    "agglo_cluster": [0, 1],
    "source_folder": ["/photos/a", "/photos/b"],
}


def test_filter_choices_are_the_distinct_indexed_values_of_every_list_field(session):
    _catalogue(session)
    choices = collection.filter_choices(session, list_filter_columns())
    # Generic over the schema: one entry per field filtered by a list of values, none for bounds.
    assert set(choices) == {f.key for f in FILTER_FIELDS if f.match == "any"}
    assert {key: choices[key] for key in EXPECTED} == EXPECTED


def test_filter_choices_follow_the_fields_given(session):
    """A field added to the schema is offered with no change to db/: here the catalogue's `file_name`."""
    _catalogue(session)
    extra = PayloadField("file_name", "keyword", "file_name", "any", "file_names", "file name", "file-name")
    choices = collection.filter_choices(session, list_filter_columns((extra,)))
    assert choices == {"file_name": ["0.jpg", "1.jpg", "2.jpg"]}


def test_every_filter_field_comes_from_a_catalogue_column():
    """A column of images, or for a list field a relationship (`tags`: the image_tags rows)."""
    columns = set(Image.__table__.columns.keys())
    relationships = set(Image.__mapper__.relationships.keys())
    assert all(f.source in (relationships if f.many else columns) for f in FILTER_FIELDS)


def test_browse_filters_without_a_query_sorted_and_paged(session):
    _catalogue(session)
    repo.update_images(session, [{"id": 1, "predicted_prob": 0.9}, {"id": 2, "predicted_prob": 0.7}])
    session.commit()
    total, rows = collection.browse(session, {"predicted_label": ("any", ["cat"])})
    assert total == 2 and [r.id for r in rows] == [1, 2]  # most confident first
    total, rows = collection.browse(session, {"predicted_prob": ("min", 0.8)})
    assert total == 1 and [r.id for r in rows] == [1]
    total, rows = collection.browse(session, {}, order="file name", limit=2, offset=2)
    assert total == 3 and [r.file_name for r in rows] == ["2.jpg"]  # the pending image is not browsed
    assert collection.cluster_members(session, "kmeans", 2, limit=1, offset=1) == [(3, "/photos/a/2.jpg", "2.jpg")]


def test_label_examples_name_one_indexed_image_per_label(session):
    _catalogue(session)
    assert collection.label_examples(session) == {"cat": "/photos/b/0.jpg", "dog": "/photos/a/1.jpg"}


def test_cluster_summary_is_counted_by_the_database(session):
    """Sizes, dominant label and purity per cluster, from one grouped row per (cluster, label): the rows that
    reach Python do not grow with the number of images."""
    from sqlalchemy import event

    _catalogue(session)
    for n in range(40):  # 40 more indexed images in kmeans cluster 0, all "dog"
        image = repo.add_image(session, content_hash=f"{100 + n:064x}", path=f"/photos/a/x{n}.jpg",
                               file_name=f"x{n}.jpg", width=4, height=4, size_bytes=10, source_folder="/photos/a",
                               label="dog", status="indexed")
        repo.update_images(session, [{"id": image.id, "kmeans_cluster": 0}])
    session.commit()
    fetched = []
    engine = session.get_bind()

    def count_rows(conn, cursor, statement, parameters, context, executemany):
        fetched.append(statement)

    event.listen(engine, "after_cursor_execute", count_rows)
    try:
        result = collection.cluster_summary(session, "kmeans")
    finally:
        event.remove(engine, "after_cursor_execute", count_rows)
    assert [r["cluster"] for r in result] == [0, 2]
    first = result[0]
    assert (first["size"], first["labelled"], first["dominant_label"]) == (41, 41, "dog")
    assert first["purity"] == 1.0
    assert (result[1]["size"], result[1]["labelled"], result[1]["dominant_label"], result[1]["purity"]) == \
        (2, 1, "cat", 1.0)
    # one grouped query for the sizes and labels, one for the most frequent tags
    assert len(fetched) == 2 and all("GROUP BY" in f.upper() for f in fetched)
    assert first["top_tags"] == [] and (first["top_labels"], first["n_labels"]) == ([("dog", 41)], 1)
    assert (result[1]["top_labels"], result[1]["n_labels"]) == ([("cat", 1)], 1)  # and one unlabelled member


def test_a_cluster_without_labels_is_named_by_its_most_frequent_tags(session):
    _catalogue(session)
    repo.update_images(session, [{"id": i, "label": None} for i in (1, 2, 3)])
    repo.set_image_tags(session, {1: [("tabby", 0.8), ("tiger cat", 0.1)], 3: [("tabby", 0.5), ("Persian cat", 0.3)],
                                  2: [("umbrella", 0.9)], 4: [("zebra", 0.9)]})
    session.commit()
    rows = {r["cluster"]: r for r in collection.cluster_summary(session, "kmeans", n_tags=2)}
    assert rows[2]["top_tags"] == ["tabby", "Persian cat"]  # on 2 images, then 1 (ties by name)
    assert cluster_title(rows[2]) == "tagged tabby, Persian cat" and cluster_title(rows[0]) == "tagged umbrella"
    assert collection.distinct_tags(session) == ["Persian cat", "tabby", "tiger cat", "umbrella"]  # 4 is pending
    total, rows = collection.browse(session, {"tags": ("any", ["tiger cat", "umbrella"])})
    assert total == 2 and {r.id for r in rows} == {1, 2}


def test_collection_browser_reads_counts_and_single_ids_not_lists(session):
    _catalogue(session)
    assert collection.folder_counts(session) == [("/photos/a", 2), ("/photos/b", 1)]  # indexed images only
    assert collection.first_indexed_id(session) == 1  # "0.jpg", first by file name
    drawn = {collection.random_indexed_id(session) for _ in range(40)}
    assert drawn <= {1, 2, 3} and len(drawn) > 1  # never the pending image; not always the same one


def test_first_and_random_ids_of_an_empty_catalogue_are_none(session):
    assert collection.first_indexed_id(session) is None and collection.random_indexed_id(session) is None


def test_browse_by_date_taken_and_place_agrees_with_the_payload_filter(session):
    """The Filtered page without a query image: date ranges on the photos' own clocks (offsets from -12 h to
    +14 h) and circles (across the antimeridian too) keep exactly the photos Filter.matches keeps."""
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from imgsearch.search.payload import BY_KEY, Filter, day_start

    rng = np.random.default_rng(0)
    payloads = {}
    for n in range(120):
        offset = None if n % 7 == 0 else int(rng.choice([-720, -300, 0, 60, 330, 840]))
        local = datetime(2024, 7, 1) + timedelta(minutes=int(rng.integers(0, 20 * 24 * 60)))
        utc = (local - timedelta(minutes=offset or 0)).replace(tzinfo=UTC)
        lat, lon = float(rng.uniform(-60, 60)), float(rng.choice([rng.uniform(179, 180), rng.uniform(-180, -179),
                                                                    rng.uniform(-10, 10)]))
        placed = n % 5 != 0
        image = repo.add_image(session, content_hash=f"{n:064x}", path=f"/p/{n}.jpg", file_name=f"{n:03d}.jpg",
                               width=4, height=4, size_bytes=10, source_folder="/p", status="indexed")
        repo.update_images(session, [{"id": image.id, "taken_at": utc, "taken_at_offset": offset,
                                      "latitude": lat if placed else None, "longitude": lon if placed else None}])
        payloads[image.id] = {"taken_at": day_start(local.date()) + (local - datetime.combine(local.date(),
                                                                                               datetime.min.time()))
                              .total_seconds(), "location": {"lat": lat, "lon": lon} if placed else None}
    session.commit()
    point = next(p["location"] for p in payloads.values() if p["location"] and abs(p["location"]["lon"]) > 179)
    filters = [Filter(taken_after="2024-07-05", taken_before="2024-07-09"), Filter(taken_before="2024-07-02"),
               Filter(near=(point["lat"], point["lon"], 400)), Filter(near=(point["lat"], point["lon"], 3000)),
               Filter(has_location=False), Filter(has_location=True, taken_after="2024-07-15")]
    for flt in filters:
        conditions = {BY_KEY[f.key].source: (f.match, v) for f, v in flt.conditions()}
        expected = sorted(i for i, p in payloads.items() if flt.matches(p))
        total, rows = collection.browse(session, conditions, order="file name", limit=500)
        assert total == len(expected) and [r.id for r in rows] == expected, flt
        total, page = collection.browse(session, conditions, order="file name", limit=3, offset=2)
        assert total == len(expected) and [r.id for r in page] == expected[2:5], flt
        assert 0 < len(expected) < len(payloads), flt  # each case tells something
    first, last = collection.taken_days(session)
    locals_ = [datetime(1970, 1, 1) + timedelta(seconds=p["taken_at"]) for p in payloads.values()]
    assert (first, last) == (min(locals_).date(), max(locals_).date())
