"""AppTest run of the Teach a label page on its own copy of the tiny trained collection."""

from __future__ import annotations

import pytest

from imgsearch.db import repository as repo
from imgsearch.db.session import make_engine, session_factory
from imgsearch.ui.services.settings import Settings
from tests.ui.web.conftest import page


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.mark.slow
def test_teach_page_finds_more_like_the_examples_and_applies_a_page(own_collection):
    engine = make_engine(Settings(data_dir=own_collection.data_dir).db_url)
    Session = session_factory(engine)
    with Session() as s:
        rows = repo.images_by_ids(s, range(1, 1000))
    sky = sorted(i for i, r in rows.items() if r.label == "sky")
    at = page("teach")
    at.run()
    _ok(at)
    assert "Name the label" in at.info[0].value
    at.text_input(key="teach_label").set_value("blue").run()
    _ok(at)
    # From a search: the image and its neighbours, each with a role.
    at.number_input(key="teach_seed").set_value(sky[0]).run()
    _ok(at)
    assert len([r for r in at.radio if r.key.startswith("teach_pick_")]) == 18
    at.text_input(key="teach_examples").set_value(" ".join(map(str, sky[:3]))).run()
    at.button(key="teach_find").click().run()
    _ok(at)
    assert at.text_input(key="teach_examples").value == ""  # added once: the session keeps them
    assert "3 images labelled" in at.caption[0].value
    verdicts = [r for r in at.radio if r.key.startswith("teach_verdict_")]
    assert len(verdicts) == 15  # every image but the three examples, at most 40
    shown = [int(r.key.rsplit("_", 1)[1]) for r in verdicts]
    assert set(shown[:3]) == set(sky[3:])  # the rest of the class first
    for r in verdicts[:3]:
        r.set_value("accept")
    verdicts[3].set_value("reject")
    at.run()
    at.button(key="teach_apply").click().run()
    _ok(at)
    assert any("3 accepted, 1 rejected, 11 skipped; 6 images are labelled 'blue'" in m.value for m in at.success)
    with Session() as s:
        assert {r.label for r in repo.images_by_ids(s, sky).values()} == {"blue"}
    # The next page is ranked afresh and offers none of the reviewed images.
    assert not [r for r in at.radio if r.key.startswith("teach_verdict_")]
    assert any("No candidates left" in i.value for i in at.info)
    at.text_input(key="teach_examples").set_value("1 2 99999").run()
    at.button(key="teach_find").click().run()
    _ok(at)
    assert any("no image with id 99999" in e.value for e in at.error)
    at.button(key="teach_done").click().run()
    _ok(at)
    assert any("Training job" in m.value and "queued" in m.value for m in at.success)
    engine.dispose()
