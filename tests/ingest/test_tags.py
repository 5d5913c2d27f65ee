"""Automatic tags at ingest: the embedding's forward pass tags each image (a fake, deterministic head: the tiny
backbone's colour head, models/backbones.py TINY_TAGS), into the catalogue's image_tags and the stores' `tags`
payload with the broader WordNet terms; `imgsearch search --text` finds them by words."""

from __future__ import annotations

import pytest

from imgsearch.db import collection
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.models.backbones import TinyBackbone
from imgsearch.search.payload import Filter
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from tests.helpers import TEST_BACKBONE, run_cli


@pytest.fixture
def tagged_ctx(tmp_path):
    c = Context(Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0), role="test",
                _backbone=TinyBackbone(tagged=True))
    yield c
    c.close()


def _ingest(ctx, folder):
    return ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, ctx.trained(),
                         ctx.ingest_options(), progress=False)


def _tags_by_label(ctx) -> dict[str, set[str]]:
    with ctx.Session() as s:
        ids, tags, probs = collection.image_tag_rows(s)
        from imgsearch.db import repository as repo

        rows = repo.images_by_ids(s, list(set(ids)))
        assert all(p >= 0.05 for p in probs)
        out: dict[str, set[str]] = {}
        for i, tag in zip(ids, tags, strict=True):
            out.setdefault(rows[i].label, set()).add(tag)
        return out


@pytest.mark.slow
def test_ingest_tags_each_image_in_the_catalogue_and_the_payloads(tagged_ctx, tiny_dataset):
    assert _ingest(tagged_ctx, tiny_dataset).n_indexed == 18
    # red apples: the red class (a dog breed); green grass: a lizard; blue sky: a bird
    assert _tags_by_label(tagged_ctx) == {"apples": {"Irish setter"}, "grass": {"green lizard"},
                                          "sky": {"indigo bunting"}}
    ids = tagged_ctx.stores.qdrant.ids().tolist()
    for store in (tagged_ctx.stores.qdrant, tagged_ctx.stores.faiss):
        payloads = dict(zip(ids, store.get_payloads(ids), strict=True))
        for p in payloads.values():
            if p["label"] == "apples":
                assert {"Irish setter", "setter", "dog", "mammal", "animal"} <= set(p["tags"])
                assert "bird" not in p["tags"]
        # the filter on a broader term, natively in Qdrant, by the reference semantics in the FAISS mirror
        query = tagged_ctx.stores.faiss.get_vectors([ids[0]])[0]
        hits = store.search(query, 18, Filter(tags=["dog"])) if store is tagged_ctx.stores.qdrant else [
            h for h in store.search(query, 18) if Filter(tags=["dog"]).matches(h.payload)]
        assert len(hits) == 6 and {payloads[h.id]["label"] for h in hits} == {"apples"}


@pytest.mark.slow
def test_without_a_head_images_get_no_tags(ctx, tiny_dataset):
    assert ctx.backbone.head is None
    _ingest(ctx, tiny_dataset)
    assert _tags_by_label(ctx) == {}
    ids = ctx.stores.qdrant.ids().tolist()
    assert all(p["tags"] == [] for p in ctx.stores.qdrant.get_payloads(ids))


@pytest.mark.slow
def test_search_by_words_on_the_command_line(tagged_ctx, tiny_dataset, capsys, monkeypatch):
    _ingest(tagged_ctx, tiny_dataset)
    data_dir = tagged_ctx.settings.data_dir
    tagged_ctx.close()  # the search runs as another process would, with the untagged tiny backbone
    code, out = run_cli(["search", "--text", "dogs"], data_dir, capsys, monkeypatch)
    assert code == 0 and out.count("│ apples_0") == 6 and "grass_0" not in out and "118 classes" in out
    code, out = run_cli(["search", "--text", "animal", "--k", "4"], data_dir, capsys, monkeypatch)
    assert code == 0 and sum(out.count(f"│ {c}_0") for c in ("apples", "grass", "sky")) == 4
    code, out = run_cli(["search", "--text", "bird", "--label", "sky", "--k", "3"], data_dir, capsys, monkeypatch)
    assert code == 0 and out.count("│ sky_0") == 3
    code, out = run_cli(["search", "--text", "bird", "--label", "grass"], data_dir, capsys, monkeypatch)
    assert code == 0 and "no image is tagged with these words and matches these filters" in out
    code, out = run_cli(["search", "--text", "lizzard"], data_dir, capsys, monkeypatch)
    assert code == 2 and "'lizzard' (close: lizard" in out
    code, out = run_cli(["search"], data_dir, capsys, monkeypatch)
    assert code == 2 and "--text" in out
