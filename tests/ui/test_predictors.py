"""Context.predictors: an ingest reads the models that predict payloads before it starts, never the forest."""

from __future__ import annotations

import pytest

from imgsearch.models.persistence import ModelLoadError
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from tests.helpers import write_dataset
from tests.ui.web.conftest import copy_collection


def _models_folder(ctx: Context):
    return ctx.trained(lazy=True).folder


def test_an_ingest_never_reads_the_random_forest(tmp_path, backbone, collection):
    from imgsearch.ingest.worker import JobRequest
    from imgsearch.ui.services.jobs import job_handlers

    col = copy_collection(collection, tmp_path / "col")
    settings = Settings(data_dir=col.data_dir, backbone=col.backbone, num_workers=0)
    with Context(settings, _backbone=backbone) as ctx:
        forest = _models_folder(ctx) / "random_forest.skops"
        forest.write_bytes(b"not a model")  # read, it would be a ModelLoadError
        new = write_dataset(tmp_path / "new", per_class=2, seed=7)
        result = job_handlers(ctx)["ingest"](JobRequest(1, "ingest", str(new), {}), lambda: False, lambda d: None)
        assert result.summary.startswith("6 new images indexed")
        assert ctx.stores.qdrant.get_payloads(ctx.stores.qdrant.ids().tolist()[-1:])[0]["predicted_label"]


def test_an_ingest_with_a_damaged_classifier_refuses_before_any_work(tmp_path, backbone, collection):
    col = copy_collection(collection, tmp_path / "col")
    settings = Settings(data_dir=col.data_dir, backbone=col.backbone, num_workers=0)
    with Context(settings, _backbone=backbone) as ctx:
        (_models_folder(ctx) / "svm.skops").write_bytes(b"not a model")
        with pytest.raises(ModelLoadError):
            ctx.predictors()
