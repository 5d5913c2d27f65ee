"""The Filtered page on photos with EXIF (tests.helpers.photos): the date-taken range, the camera and the place
filters, in the URL and back, what dropping each would bring back, the date on the cards and in the lightbox, and
"Photos taken nearby"."""

from __future__ import annotations

from datetime import date

import pytest

from tests.ui.web.conftest import TIMEOUT, UI, page


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _matching(at) -> int:
    (n,) = [int(h.value.split()[0].replace(",", "")) for h in at.subheader if "match" in h.value]
    return n


def _cards(at) -> list[str]:
    return [m.value for m in at.markdown if "<code" in m.value]


def _names(at) -> set[str]:
    """The file names the page shows: on detailed cards' captions, or in the compact grid's tick boxes' details
    (browsing without a query is the compact grid by default)."""
    import re

    detailed = {re.search(r"<code[^>]*>([^<]+)</code>", m).group(1) for m in _cards(at)}
    compact = {re.match(r"\*\*(.+?)\*\*", c.help).group(1) for c in at.checkbox if "_sel_" in c.key}
    return detailed | compact


@pytest.mark.slow
def test_date_range_and_camera_filter_the_photos(photo_env):
    at = page("filtered")
    at.run()
    _ok(at)
    assert _matching(at) == 6
    after, before = at.date_input(key="filtered_taken_after"), at.date_input(key="filtered_taken_before")
    assert after.value is None and before.value is None  # empty: no bound
    assert (after.min, after.max) == (date(2010, 6, 1), date(2024, 7, 14))  # the collection's days
    assert at.multiselect(key="filtered_cameras").options == ["Apple iPhone 12", "Apple iPhone 13", "NIKON D750"]
    after.set_value(date(2024, 1, 1)).run()
    _ok(at)
    assert _names(at) == {"lisbon_1.jpg", "lisbon_2.jpg", "paris.jpg", "nikon.jpg"}
    at.date_input(key="filtered_taken_before").set_value(date(2024, 7, 11)).run()
    assert _names(at) == {"lisbon_1.jpg", "lisbon_2.jpg", "nikon.jpg"}
    at.multiselect(key="filtered_cameras").set_value(["Apple iPhone 13"]).run()
    _ok(at)
    assert _names(at) == {"lisbon_1.jpg", "lisbon_2.jpg"}
    shown = "\n".join(m.value for m in at.markdown)
    assert "date taken from 2024-01-01 to 2024-07-11" in shown and "camera is one of: Apple iPhone 13" in shown
    # The detailed cards say when, with what and where.
    at.toggle(key="filtered_compact").set_value(False).run()
    lisbon = next(c for c in _cards(at) if "lisbon_1.jpg" in c)
    assert "2024-07-10 10:00" in lisbon and "Apple iPhone 13" in lisbon and "38.722, -9.139" in lisbon


@pytest.mark.slow
def test_place_filters(photo_env):
    at = page("filtered")
    at.run()
    at.text_input(key="filtered_near").set_value("38.7223, -9.1393").run()
    _ok(at)
    assert at.number_input(key="filtered_radius_km").value == 10
    assert _names(at) == {"lisbon_1.jpg", "lisbon_2.jpg"}
    at.number_input(key="filtered_radius_km").set_value(300).run()
    assert _names(at) == {"lisbon_1.jpg", "lisbon_2.jpg", "porto.jpg"}
    at.text_input(key="filtered_near").set_value("").run()
    at.selectbox(key="filtered_has_location").set_value("no place").run()
    _ok(at)
    assert _names(at) == {"nikon.jpg", "scan.jpg"}
    at.toggle(key="filtered_compact").set_value(False).run()
    scan, nikon = (next(c for c in _cards(at) if name in c) for name in ("scan.jpg", "nikon.jpg"))
    assert ">2024-01-01 00:00</div>" in nikon and ">NIKON D750</div>" in nikon
    # A file's time is not on the card, but its lines are kept: the cards of a row stay the same height.
    assert "2010-06-01" not in scan and scan.endswith(">&nbsp;</div><div style=\"white-space:nowrap;overflow:hidden;"
                                                      "text-overflow:ellipsis\">&nbsp;</div>")
    at.text_input(key="filtered_near").set_value("91, 0").run()  # mangled: said, and left out
    _ok(at)
    assert at.sidebar.error and "latitude" in at.sidebar.error[0].value
    assert _names(at) == {"nikon.jpg", "scan.jpg"}


def test_dropping_each_photo_filter_is_counted(photo_env):
    at = page("filtered")
    at.run()
    at.date_input(key="filtered_taken_after").set_value(date(2024, 7, 12))
    at.multiselect(key="filtered_cameras").set_value(["Apple iPhone 13"])
    at.text_input(key="filtered_near").set_value("38.7223, -9.1393")
    at.run()
    _ok(at)
    assert "No indexed image matches" in at.warning[0].value
    hints = next(m.value for m in at.markdown if m.value.startswith("Drop a filter"))
    assert "without “date taken on or after 2024-07-12”: 2 match" in hints
    assert "without “camera is one of: Apple iPhone 13”" not in hints  # dropping it alone finds nothing
    at.multiselect(key="filtered_cameras").set_value([])
    at.text_input(key="filtered_near").set_value("")
    at.date_input(key="filtered_taken_before").set_value(date(2024, 7, 13))
    at.run()
    hints = next(m.value for m in at.markdown if m.value.startswith("Drop a filter"))
    assert "without “date taken from 2024-07-12 to 2024-07-13”: 6 match" in hints


def _app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(UI / "app.py"), default_timeout=TIMEOUT)


def _param(at, key: str) -> list[str]:
    value = at.query_params[key]
    return list(value) if isinstance(value, list) else [value]


@pytest.mark.slow
def test_photo_filters_round_trip_through_the_url(photo_env):
    at = _app()
    at.run()
    at.switch_page("screens/filtered_page.py").run()
    at.date_input(key="filtered_taken_after").set_value(date(2024, 1, 1))
    at.date_input(key="filtered_taken_before").set_value(date(2024, 7, 12))
    at.multiselect(key="filtered_cameras").set_value(["Apple iPhone 13"])
    at.text_input(key="filtered_near").set_value("38.7223, -9.1393")
    at.number_input(key="filtered_radius_km").set_value(2)
    at.run()
    _ok(at)
    url = {key: _param(at, key) for key in at.query_params}
    assert url["taken-after"] == ["2024-01-01"] and url["taken-before"] == ["2024-07-12"]
    assert url["camera"] == ["Apple iPhone 13"] and url["near"] == ["38.7223,-9.1393"]
    assert url["radius-km"] == ["2"] and "has-location" not in url
    # A new session from that URL (a reload, a shared link) has the same filters.
    link = _app()
    for key, values in url.items():
        link.query_params[key] = values if len(values) > 1 else values[0]
    link.run()
    link.switch_page("screens/filtered_page.py").run()
    _ok(link)
    assert link.date_input(key="filtered_taken_after").value == date(2024, 1, 1)
    assert link.date_input(key="filtered_taken_before").value == date(2024, 7, 12)
    assert link.multiselect(key="filtered_cameras").value == ["Apple iPhone 13"]
    assert link.text_input(key="filtered_near").value == "38.72230, -9.13930"
    assert link.number_input(key="filtered_radius_km").value == 2
    # Cleared: nothing of them is left in the URL.
    link.button(key="filtered_clear").click().run()
    _ok(link)
    assert not {"taken-after", "taken-before", "camera", "near", "radius-km"} & set(link.query_params)


def _ids() -> dict[str, int]:
    from sqlalchemy import select

    from imgsearch.db.models import Image
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    with open_database(Settings())() as s:
        return {name: i for name, i in s.execute(select(Image.file_name, Image.id))}


@pytest.mark.slow
def test_the_image_view_shows_the_date_camera_place_and_links_to_photos_taken_nearby(photo_env):
    ids = _ids()
    at = _app()
    at.run()
    at.query_params["id"] = str(ids["lisbon_1.jpg"])
    at.switch_page("screens/image_page.py").run()
    _ok(at)
    assert "2024-07-10 10:00 · Apple iPhone 13 · 38.722, -9.139" in [c.value for c in at.caption]
    details = dict(zip(*at.table[0].value.to_dict("list").values(), strict=True))
    assert details["taken"] == "2024-07-10 10:00 (UTC+01:00), from EXIF" and details["camera"] == "Apple iPhone 13"
    assert details["place"].startswith("38.722, -9.139")
    at.button(key=f"page_image_nearby_{ids['lisbon_1.jpg']}").click().run()
    _ok(at)
    # On the Filtered page: this photo the query, only the photos within 1 km of its place (itself left out).
    assert at.text_input(key="filtered_near").value == "38.72230, -9.13930"
    assert at.number_input(key="filtered_radius_km").value == 1
    assert [r[2] for r in at.session_state["filtered_results"]] == ["lisbon_2.jpg"]  # 0.8 km away; Porto is not
    assert _param(at, "near") == ["38.7223,-9.1393"] and _param(at, "radius-km") == ["1"]
    assert _param(at, "q") == [f"id:{ids['lisbon_1.jpg']}"]
    (card,) = _cards(at)  # a search result's card: the date, camera and place from the store's payload
    assert "lisbon_2.jpg" in card and ">2024-07-11 18:30</div>" in card and ">Apple iPhone 13 · 38.716, -9.136<" in card
    # A photo without a place has no such link; the one dated by its file says so.
    other = _app()
    other.run()
    other.query_params["id"] = str(ids["scan.jpg"])
    other.switch_page("screens/image_page.py").run()
    _ok(other)
    assert not [b for b in other.button if "nearby" in b.key]
    details = dict(zip(*other.table[0].value.to_dict("list").values(), strict=True))
    assert details["taken"].startswith("2010-06-01") and details["taken"].endswith("from file time")
    assert "camera" not in details and "place" not in details
