"""Round trips of images, paths, runs, metrics, class metrics, artifacts and skipped files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
from imgsearch.db.models import ClassMetric, Image, ImagePath, Metric, Run, RunArtifact, SkippedFile


def _image(n: int, **extra: object) -> dict:
    fields = dict(
        content_hash=f"{n:064x}",
        path=f"/photos/cat/{n}.jpg",
        file_name=f"{n}.jpg",
        width=64 + n,
        height=48,
        size_bytes=5_000_000_000 + n,  # beyond 32 bits
        source_folder="/photos",
    )
    fields.update(extra)
    return fields


def test_image_round_trip(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        run = repo.start_run(session, "ingest", backbone="resnet50")
        image = repo.add_image(session, **_image(7, label="cat", split="train", ingest_run_id=run.id))
        image_id, run_id = image.id, run.id
    with factory() as session:
        loaded = session.get(Image, image_id)
        assert loaded is not None
        assert (loaded.content_hash, loaded.path, loaded.file_name) == (
            f"{7:064x}",
            "/photos/cat/7.jpg",
            "7.jpg",
        )
        assert (loaded.width, loaded.height, loaded.size_bytes) == (71, 48, 5_000_000_007)
        assert (loaded.label, loaded.split, loaded.source_folder) == ("cat", "train", "/photos")
        assert loaded.status == "pending"
        assert loaded.ingest_run_id == run_id
        assert loaded.predicted_label is None and loaded.kmeans_cluster is None
        assert loaded.created_at.tzinfo is not None
        assert abs(loaded.created_at - datetime.now(UTC)) < timedelta(minutes=1)
        assert repo.image_by_hash(session, f"{7:064x}").id == image_id
        assert repo.image_by_hash(session, "0" * 63 + "f") is None


def test_content_hash_is_unique(session: Session) -> None:
    repo.add_image(session, **_image(1))
    with pytest.raises(IntegrityError):
        repo.add_image(session, **_image(1, path="/elsewhere/1.jpg"))
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Image)) == 0


def test_primary_path_is_unique(session: Session) -> None:
    repo.add_image(session, **_image(1))
    with pytest.raises(IntegrityError):
        repo.add_image(session, **_image(2, path="/photos/cat/1.jpg"))


def test_extra_paths_round_trip_and_cascade(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        image = repo.add_image(session, **_image(1))
        assert repo.add_extra_path(session, image, "/photos/dup/1.jpg") is not None
        # Known paths (extra or primary) are not recorded twice.
        assert repo.add_extra_path(session, image, "/photos/dup/1.jpg") is None
        assert repo.add_extra_path(session, image, image.path) is None
        image_id = image.id
    with factory.begin() as session:
        assert [p.path for p in session.get(Image, image_id).extra_paths] == ["/photos/dup/1.jpg"]
        assert repo.image_by_path(session, "/photos/dup/1.jpg").id == image_id
        assert repo.image_by_path(session, "/photos/cat/1.jpg").id == image_id
        assert repo.image_by_path(session, "/photos/none.jpg") is None
        # The database itself cascades (ON DELETE CASCADE with foreign keys on), not only the ORM.
        session.execute(delete(Image).where(Image.id == image_id))
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(ImagePath)) == 0


def test_image_bulk_helpers(session: Session) -> None:
    ids = [repo.add_image(session, **_image(n)).id for n in range(5)]
    repo.update_images(
        session,
        [
            {
                "id": ids[0],
                "predicted_label": "dog",
                "predicted_prob": 0.75,
                "kmeans_cluster": 3,
                "agglo_cluster": 1,
            }
        ],
    )
    repo.set_image_status(session, ids[:2], "indexed")
    session.commit()
    session.expire_all()
    found = repo.images_by_ids(session, [ids[0], ids[3], 10_000, ids[0]])
    assert sorted(found) == [ids[0], ids[3]]
    first = found[ids[0]]
    assert (first.predicted_label, first.predicted_prob, first.kmeans_cluster, first.agglo_cluster) == (
        "dog",
        0.75,
        3,
        1,
    )
    assert repo.image_ids_with_status(session, "indexed") == ids[:2]
    assert repo.image_ids_with_status(session, "pending") == ids[2:]
    with pytest.raises(ValueError, match="status"):
        repo.set_image_status(session, ids, "done")


def test_images_by_ids_handles_more_ids_than_sqlite_parameters(session: Session) -> None:
    ids = [repo.add_image(session, **_image(n)).id for n in range(3)]
    found = repo.images_by_ids(session, list(range(1, 40_000)))
    assert sorted(found) == ids


def test_run_round_trip(factory: sessionmaker[Session]) -> None:
    params = {"k": 50, "seed": 0, "classes": ["cat", "dog"]}
    with factory.begin() as session:
        run = repo.start_run(
            session,
            "train",
            backbone="resnet50",
            backbone_dim=2048,
            weights_sha256="ab" * 32,
            params=params,
            dataset_path="/data/caltech",
            dataset_fingerprint="cd" * 32,
        )
        assert run.outcome == "running" and run.finished_at is None
        repo.finish_run(
            session, run, "ok", n_images=10, n_skipped=2, n_failed=1, n_duplicates=3, message="fine"
        )
        run_id = run.id
    with factory() as session:
        loaded = session.get(Run, run_id)
        assert (loaded.kind, loaded.backbone, loaded.backbone_dim) == ("train", "resnet50", 2048)
        assert loaded.weights_sha256 == "ab" * 32 and loaded.dataset_fingerprint == "cd" * 32
        assert loaded.params == params and loaded.dataset_path == "/data/caltech"
        assert (loaded.n_images, loaded.n_skipped, loaded.n_failed, loaded.n_duplicates) == (10, 2, 1, 3)
        assert loaded.outcome == "ok" and loaded.message == "fine"
        assert loaded.started_at.tzinfo == UTC and loaded.finished_at >= loaded.started_at


def test_run_arguments_are_checked(session: Session) -> None:
    with pytest.raises(ValueError, match="kind"):
        repo.start_run(session, "training")
    run = repo.start_run(session, "ingest")
    with pytest.raises(ValueError, match="outcome"):
        repo.finish_run(session, run, "running")
    with pytest.raises(TypeError, match="n_imgs"):
        repo.finish_run(session, run, "ok", n_imgs=3)


def test_list_and_latest_runs(session: Session) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    for i, (kind, outcome) in enumerate(
        [("train", "ok"), ("ingest", "ok"), ("train", "failed"), ("train", "ok")]
    ):
        run = repo.start_run(session, kind)
        run.started_at = t0 + timedelta(hours=i)
        repo.finish_run(session, run, outcome)
    session.commit()
    runs = repo.list_runs(session)
    assert [r.started_at.hour for r in runs] == [3, 2, 1, 0]
    assert [r.started_at.hour for r in repo.list_runs(session, kind="train", limit=2)] == [3, 2]
    assert repo.latest_run(session, "train").started_at.hour == 3
    assert repo.latest_run(session, "train", outcome="failed").started_at.hour == 2
    assert repo.latest_run(session, "benchmark") is None


def test_naive_datetimes_are_refused(session: Session) -> None:
    run = repo.start_run(session, "train")
    run.finished_at = datetime(2025, 1, 1, 12, 0)
    with pytest.raises(Exception, match="naive datetime"):
        session.flush()


def test_aware_datetimes_are_stored_as_utc(factory: sessionmaker[Session]) -> None:
    plus_two = datetime(2025, 6, 1, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    with factory.begin() as session:
        run = repo.start_run(session, "train")
        run.started_at = plus_two
        run_id = run.id
    with factory() as session:
        assert session.get(Run, run_id).started_at == datetime(2025, 6, 1, 14, 0, tzinfo=UTC)
        assert session.get(Run, run_id).started_at.tzinfo == UTC


def test_metrics_round_trip_and_overwrite(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        run_id = repo.start_run(session, "benchmark").id
        repo.record_metrics(session, run_id, {"accuracy": 0.9, "map@10": 0.5})
        repo.record_metrics(session, run_id, {"accuracy": 0.95, "seconds": 12})
    with factory() as session:
        assert repo.run_metrics(session, run_id) == {"accuracy": 0.95, "map@10": 0.5, "seconds": 12.0}
        assert session.scalar(select(func.count()).select_from(Metric)) == 3
        with pytest.raises(ValueError, match="recall"):
            repo.record_metrics(session, run_id, {"recall": float("nan")})


def test_metric_name_is_unique_per_run(session: Session) -> None:
    run_id = repo.start_run(session, "train").id
    session.add_all(
        [Metric(run_id=run_id, name="acc", value=1.0), Metric(run_id=run_id, name="acc", value=2.0)]
    )
    with pytest.raises(IntegrityError):
        session.flush()


def test_class_metrics_round_trip(factory: sessionmaker[Session]) -> None:
    rows = [
        {"label": "cat", "precision": 0.8, "recall": 0.7, "f1": 0.746, "support": 10, "accuracy": 0.7},
        {"label": "dog", "precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 4},
    ]
    with factory.begin() as session:
        run_id = repo.start_run(session, "train").id
        repo.record_class_metrics(session, run_id, "svm", rows)
        repo.record_class_metrics(session, run_id, "rf", rows[:1])
    with factory() as session:
        svm = repo.run_class_metrics(session, run_id, model="svm")
        got = [(m.label, m.precision, m.recall, m.f1, m.support, m.accuracy) for m in svm]
        assert got == [("cat", 0.8, 0.7, 0.746, 10, 0.7), ("dog", 1.0, 0.5, 0.667, 4, None)]
        assert [m.model for m in repo.run_class_metrics(session, run_id)] == ["svm", "svm", "rf"]
        assert len(session.get(Run, run_id).class_metrics) == 3


def test_artifact_round_trip_and_replace(factory: sessionmaker[Session]) -> None:
    confusion = {"classes": ["cat", "dog"], "matrix": [[5, 1], [0, 4]]}
    with factory.begin() as session:
        run_id = repo.start_run(session, "train").id
        repo.record_artifact(session, run_id, "confusion_svm", {"classes": [], "matrix": []})
        repo.record_artifact(session, run_id, "confusion_svm", confusion)
    with factory() as session:
        assert repo.run_artifact(session, run_id, "confusion_svm") == confusion
        assert repo.run_artifact(session, run_id, "missing") is None
        assert session.scalar(select(func.count()).select_from(RunArtifact)) == 1


def test_skipped_round_trip(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        run_id = repo.start_run(session, "ingest").id
        repo.record_skipped(session, run_id, "/photos/bad.jpg", "truncated", "image file is truncated")
        repo.record_skipped(session, run_id, "/photos/readme.txt", "not_image")
        with pytest.raises(ValueError, match="reason"):
            repo.record_skipped(session, run_id, "/photos/x", "weird")
    with factory() as session:
        rows = [(s.path, s.reason, s.message) for s in repo.skipped_files(session, run_id)]
        assert rows == [
            ("/photos/bad.jpg", "truncated", "image file is truncated"),
            ("/photos/readme.txt", "not_image", None),
        ]


def test_deleting_a_run_removes_its_results(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        run = repo.start_run(session, "train")
        repo.record_metrics(session, run.id, {"acc": 1.0})
        repo.record_skipped(session, run.id, "/x", "empty")
        image = repo.add_image(session, **_image(1, ingest_run_id=run.id))
        run_id, image_id = run.id, image.id
    with factory.begin() as session:
        session.execute(delete(Run).where(Run.id == run_id))
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Metric)) == 0
        assert session.scalar(select(func.count()).select_from(SkippedFile)) == 0
        assert session.scalar(select(func.count()).select_from(ClassMetric)) == 0
        # Images outlive the run that catalogued them.
        assert session.get(Image, image_id).ingest_run_id is None


def test_ids_by_hash_labelled_images_and_delete(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        a = repo.add_image(session, **_image(1, label="cat"))
        b = repo.add_image(session, **_image(2))
        c = repo.add_image(session, **_image(3, label="dog"))
        repo.add_extra_path(session, a, "/photos/dup/1.jpg")
        ids = (a.id, b.id, c.id)
    with factory.begin() as session:
        assert repo.ids_by_hash(session, [f"{1:064x}", f"{3:064x}", "f" * 64]) == {
            f"{1:064x}": ids[0],
            f"{3:064x}": ids[2],
        }
        assert repo.labelled_images(session) == [(ids[0], f"{1:064x}", "cat"), (ids[2], f"{3:064x}", "dog")]
        repo.delete_images(session, [ids[0], ids[1]])
    with factory() as session:
        assert sorted(repo.images_by_ids(session, ids)) == [ids[2]]
        assert session.scalar(select(func.count()).select_from(ImagePath)) == 0


def test_numpy_values_are_stored_as_plain_python(factory: sessionmaker[Session]) -> None:
    np = pytest.importorskip("numpy")
    with factory.begin() as session:
        image_id = repo.add_image(session, **_image(1)).id
        run_id = repo.start_run(session, "train").id
        repo.update_images(
            session,
            [
                {
                    "id": image_id,
                    "kmeans_cluster": np.int64(4),
                    "predicted_prob": np.float32(0.5),
                    "split": "val",
                }
            ],
        )
        repo.record_artifact(
            session, run_id, "confusion.svm", {"labels": ["a"], "matrix": np.eye(2, dtype=int)}
        )
        repo.record_metrics(session, run_id, {"accuracy": np.float32(0.25)})
    with factory() as session:
        image = session.get(Image, image_id)
        assert (image.kmeans_cluster, image.predicted_prob, image.split) == (4, 0.5, "val")
        assert type(image.kmeans_cluster) is int
        assert repo.run_artifact(session, run_id, "confusion.svm") == {
            "labels": ["a"],
            "matrix": [[1, 0], [0, 1]],
        }
        assert repo.run_metrics(session, run_id) == {"accuracy": 0.25}


def test_rows_restored_under_their_old_ids_never_get_their_ids_handed_out_again(session: Session) -> None:
    # `doctor --repair` re-creates catalogue rows under the ids the vector stores hold; PostgreSQL's sequence must
    # then move past them (SQLite's AUTOINCREMENT does by itself).
    first = repo.add_image(session, **_image(1))
    repo.restore_image(session, first.id + 5, **_image(2))
    run = repo.restore_train_run(session, 7, "tiny", 192, "ab" * 32)
    session.commit()
    after = repo.add_image(session, **_image(3))
    assert after.id > first.id + 5
    assert repo.start_run(session, "ingest").id > run.id
    session.execute(delete(Image).where(Image.id == after.id))
    repo.restore_image(session, first.id + 2, **_image(4))  # below the newest id: nothing moves back
    assert repo.add_image(session, **_image(5)).id > after.id
