"""One contract suite for every VectorIndex backend: FAISS, Qdrant Edge, qdrant-client in memory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from imgsearch.models.identity import BackboneId
from imgsearch.search.edge_owner import OwnedEdgeIndex
from imgsearch.search.faiss_index import FaissIndex
from imgsearch.search.index import Compactable, Filter, Hit, LocalFiles, Reloadable, StoreMismatchError, VectorIndex
from imgsearch.search.payload import CONDITION_FIELDS, FILTER_FIELDS, PayloadField, day_start, haversine_km
from imgsearch.search.qdrant_edge import EdgeIndex
from imgsearch.search.qdrant_server import QdrantClientIndex
from tests.helpers import copy_store
from tests.search.owners import owner_thread

DIM = 32
N = 300
INFO = BackboneId("testnet", DIM, "ab" * 32)
OTHER = BackboneId("othernet", DIM, "cd" * 32)
LABELS = ["cat", "dog", "car", "tree", "boat"]
FOLDERS = ["/photos/a", "/photos/b", "/photos/c"]
# The values each filterable field takes in the test data; a field the schema adds gets a generic vocabulary.
VOCABULARY = {"label": LABELS, "predicted_label": LABELS, "source_folder": FOLDERS,
              "kmeans_cluster": list(range(8)), "agglo_cluster": list(range(5))}


def vocabulary(field: PayloadField) -> list:
    if field.key in VOCABULARY:
        return VOCABULARY[field.key]
    return list(range(6)) if field.type == "integer" else [f"{field.key}-{i}" for i in range(6)]


M = 8  # queries
# Photo metadata: dates through 2021, positions within a degree or so of Paris; some photos have neither.
YEAR_START = day_start("2021-01-01")
PARIS = (48.8566, 2.3522)


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[dict], np.ndarray]:
    """Seeded ids, unit vectors, payloads and M queries whose scores have no near-ties by construction.

    Query j is axis e_j (then everything is rotated); base row i's score against it is its coordinate
    j, drawn without repetition from a grid with step 0.002, so any filtered top-k is unambiguous.
    """
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(1, 10 * N), size=N, replace=False).astype(np.int64)
    head = np.stack([rng.permutation(np.linspace(-0.3, 0.3, N)) for _ in range(M)], axis=1)
    tail = rng.normal(size=(N, DIM - M))
    tail *= np.sqrt(1.0 - (head**2).sum(axis=1, keepdims=True)) / np.linalg.norm(tail, axis=1, keepdims=True)
    rotation, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    xb = (np.hstack([head, tail]) @ rotation).astype(np.float32)
    xq = rotation[:M].astype(np.float32)
    payloads = []
    for _ in range(N):
        payload: dict = {}
        for f in FILTER_FIELDS:  # every filterable field of the schema, so each one is filtered on below
            if f.match == "min":
                payload[f.key] = float(np.round(rng.random(), 6))
            elif f.key == "label" and rng.random() <= 0.2:
                payload[f.key] = None  # unlabelled
            elif f.many:  # a list of 0 to 3 values
                values = rng.choice(vocabulary(f), size=rng.integers(0, 4), replace=False).tolist()
                payload[f.key] = [int(v) if f.type == "integer" else str(v) for v in values]
            else:
                value = rng.choice(vocabulary(f))
                payload[f.key] = int(value) if f.type == "integer" else str(value)
        payload["agglo_cluster"] = np.int64(payload["agglo_cluster"])  # numpy scalars must be accepted
        dated, placed = rng.random() > 0.1, rng.random() > 0.2
        payload["taken_at"] = float(YEAR_START + rng.integers(0, 365 * 86_400)) if dated else None
        payload["location"] = ({"lat": round(PARIS[0] + rng.uniform(-1.5, 1.5), 6),
                                "lon": round(PARIS[1] + rng.uniform(-2, 2), 6)} if placed else None)
        payloads.append(payload)
    # The ends of the date range filtered below: its first second and its last day's last, both in; the next
    # day's first, out.
    for j, when in enumerate((day_start("2021-03-01"), day_start("2021-04-01") - 1, day_start("2021-04-01"))):
        payloads[j]["taken_at"] = when
    assert {f.key for f in CONDITION_FIELDS} <= set(payloads[0])  # every field a condition can be on is filtered
    return ids, xb, payloads, xq


IDS, XB, PAYLOADS, XQ = make_data()
POS = {int(i): j for j, i in enumerate(IDS)}


def brute_force(xq: np.ndarray, k: int, keep: Callable[[dict], bool] | None = None) -> list[list[int]]:
    mask = np.array([True if keep is None else keep(p) for p in PAYLOADS])
    out = []
    for q in xq:
        scores = np.where(mask, XB @ q, -np.inf)
        order = np.argsort(-scores, kind="stable")[:k]
        order = order[np.isfinite(scores[order])]
        # The data must have no near-ties in the top k, or backends may legitimately disagree.
        gaps = np.diff(scores[order])
        assert np.all(np.abs(gaps) > 1e-3), "test data has near-ties; pick another seed"
        out.append(IDS[order].tolist())
    return out


@dataclass
class Backend:
    """How to (re)open one backend's store; reopening sees the same storage."""

    name: str
    open: Callable[[BackboneId], VectorIndex]
    persistent: bool
    folder: Path


BACKENDS = ["faiss", "edge", "edge_owner", "qdrant_memory"]
SERVER_URL = os.environ.get("IMGSEARCH_QDRANT_URL")
if SERVER_URL:  # a real Qdrant server (docker compose up qdrant): the same suite runs against it
    BACKENDS.append("qdrant_server")


@contextmanager
def backend_at(kind: str, folder: Path) -> Iterator[Backend]:
    """A Backend whose stores live in `folder` (or one in-memory client); closes what it opened."""
    opened: list[VectorIndex] = []
    owners: list = []
    client = QdrantClient(":memory:")
    server_collection = f"imgsearch_contract_{uuid.uuid4().hex[:10]}"  # one per test: no leftovers shared

    def open_(info: BackboneId = INFO) -> VectorIndex:
        if kind == "faiss":
            store = FaissIndex(folder / "faiss", info, lock_timeout_s=5)
        elif kind == "edge":
            store = EdgeIndex(folder / "edge", info, lock_timeout_s=5)
        elif kind == "edge_owner":  # through an owner serving from a thread (its own process: test_edge_owner.py)
            if not owners:  # one owner per store, however many clients open it
                owners.append(owner_thread(folder / "edge", info))
            store = OwnedEdgeIndex(folder / "edge", info, lock_timeout_s=5)
        elif kind == "qdrant_server":  # a client of its own per open, like another process
            store = QdrantClientIndex(QdrantClient(url=SERVER_URL), info, collection=server_collection)
        else:
            store = QdrantClientIndex(client, info, collection="images_test", owns_client=False)
        opened.append(store)
        return store

    try:
        yield Backend(kind, open_, persistent=kind != "qdrant_memory", folder=folder)
    finally:
        for store in opened:
            store.close()
        for stop in owners:
            stop()
        client.close()
        if kind == "qdrant_server":
            with QdrantClient(url=SERVER_URL) as admin:
                admin.delete_collection(server_collection)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path: Path) -> Iterator[Backend]:
    with backend_at(request.param, tmp_path) as b:
        yield b


@pytest.fixture(scope="session")
def filled_edge(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("edge_template") / "edge"
    with EdgeIndex(folder, INFO) as s:
        s.upsert(IDS, XB, PAYLOADS)
    return folder


@pytest.fixture
def store(backend: Backend, filled_edge: Path) -> VectorIndex:
    """A filled store the test may change."""
    if backend.name in ("edge", "edge_owner"):
        # Copying a closed shard is ~5x faster than creating and filling one (payload indexes, fsyncs).
        backend.folder.mkdir(parents=True, exist_ok=True)
        copy_store(filled_edge, backend.folder / "edge")
        return backend.open(INFO)
    s = backend.open(INFO)
    s.upsert(IDS, XB, PAYLOADS)
    return s


@pytest.fixture(scope="module", params=BACKENDS)
def ro_store(request, tmp_path_factory) -> Iterator[VectorIndex]:
    """A filled store shared by the read-only tests of this module (filling Edge costs ~1 s of fsyncs)."""
    with backend_at(request.param, tmp_path_factory.mktemp(request.param)) as b:
        s = b.open(INFO)
        s.upsert(IDS, XB, PAYLOADS)
        yield s


def hit_ids(hits: list[Hit]) -> list[int]:
    return [h.id for h in hits]


def test_is_a_vector_index(ro_store):
    assert isinstance(ro_store, VectorIndex)
    assert ro_store.info == INFO


# The capabilities beyond VectorIndex that each backend has (search/index.py), which callers check for.
CAPABILITIES = {"faiss": {LocalFiles, Reloadable, Compactable}, "edge": {LocalFiles}, "edge_owner": {LocalFiles},
                "qdrant_memory": set(), "qdrant_server": set()}


def test_has_the_capabilities_callers_check_for(ro_store, request):
    kind = request.node.callspec.params["ro_store"]
    assert {p for p in (LocalFiles, Reloadable, Compactable) if isinstance(ro_store, p)} == CAPABILITIES[kind]
    if isinstance(ro_store, LocalFiles):
        assert ro_store.folder.is_dir() and ro_store.version() >= 1  # the fill above wrote


def test_count_and_ids(ro_store):
    assert ro_store.count() == N
    np.testing.assert_array_equal(ro_store.ids(), np.sort(IDS))
    assert ro_store.ids().dtype == np.int64


def test_unfiltered_topk_identical_to_brute_force(ro_store):
    expected = brute_force(XQ, 10)
    batched = ro_store.search(XQ, 10)
    assert [hit_ids(r) for r in batched] == expected
    single = ro_store.search(XQ[3], 10)
    assert isinstance(single, list) and all(isinstance(h, Hit) for h in single)
    assert hit_ids(single) == expected[3]
    # Scores are cosine similarities, best first.
    want = XB[[POS[i] for i in expected[3]]] @ XQ[3]
    np.testing.assert_allclose([h.score for h in single], want, atol=1e-5)
    top = PAYLOADS[POS[single[0].id]]
    assert single[0].payload == {k: v.item() if isinstance(v, np.generic) else v for k, v in top.items()}


def test_query_need_not_be_normalised(ro_store):
    assert hit_ids(ro_store.search(XQ[0] * 7.0, 5)) == brute_force(XQ[:1], 5)[0]
    assert ro_store.search(XQ[0] * 7.0, 1)[0].score <= 1.0 + 1e-5


def test_k_larger_than_store(ro_store):
    assert len(ro_store.search(XQ[0], N + 50)) == N


def field_filter(f: PayloadField) -> tuple[Filter, Callable[[dict], bool]]:
    """A condition on one schema field, and what it means in plain Python."""
    if f.match == "min":
        return Filter.on({f.key: 0.8}), lambda p: p[f.key] >= 0.8
    accepted = vocabulary(f)[1:3]
    return Filter.on({f.key: accepted}), lambda p: has(p, f, accepted)


def has(p: dict, f: PayloadField, accepted: list) -> bool:
    """Whether the payload meets an "any" condition: its value, or for a list field one of its values."""
    return any(v in accepted for v in p[f.key]) if f.many else p[f.key] in accepted


FILTERS = {f.key: field_filter(f) for f in FILTER_FIELDS} | {
    "labels": (Filter(labels=["cat", "dog"]), lambda p: p["label"] in ("cat", "dog")),
    "predicted_labels": (Filter(predicted_labels=["car"]), lambda p: p["predicted_label"] == "car"),
    "min_confidence": (Filter(min_confidence=0.8), lambda p: p["predicted_prob"] >= 0.8),
    "kmeans_clusters": (Filter(kmeans_clusters=[1, 3]), lambda p: p["kmeans_cluster"] in (1, 3)),
    "agglo_clusters": (Filter(agglo_clusters=[2]), lambda p: p["agglo_cluster"] == 2),
    "folders": (Filter(folders=["/photos/b"]), lambda p: p["source_folder"] == "/photos/b"),
    "combined": (
        Filter(labels=["tree", "boat", "cat"], min_confidence=0.3, folders=["/photos/a", "/photos/c"]),
        lambda p: p["label"] in ("tree", "boat", "cat") and p["predicted_prob"] >= 0.3
        and p["source_folder"] in ("/photos/a", "/photos/c"),
    ),
    "every_field": (
        Filter.on({f.key: (0.3 if f.match == "min" else vocabulary(f)[:4]) for f in FILTER_FIELDS}),
        lambda p: all(p[f.key] >= 0.3 if f.match == "min" else has(p, f, vocabulary(f)[:4]) for f in FILTER_FIELDS),
    ),
    "empty_filter": (Filter(), lambda p: True),
    "taken_between": (Filter(taken_after="2021-03-01", taken_before="2021-03-31"),
                      lambda p: p["taken_at"] is not None
                      and day_start("2021-03-01") <= p["taken_at"] < day_start("2021-04-01")),
    "taken_after": (Filter(taken_after="2021-10-01"),
                    lambda p: p["taken_at"] is not None and p["taken_at"] >= day_start("2021-10-01")),
    "taken_before": (Filter(taken_before="2021-02-14"),
                     lambda p: p["taken_at"] is not None and p["taken_at"] < day_start("2021-02-15")),
    "cameras": (Filter(cameras=["camera-2", "camera-4"]), lambda p: p["camera"] in ("camera-2", "camera-4")),
    "near": (Filter(near=(*PARIS, 60)), lambda p: p["location"] is not None
             and haversine_km(*PARIS, p["location"]["lat"], p["location"]["lon"]) <= 60),
    "has_location": (Filter(has_location=True), lambda p: p["location"] is not None),
    "no_location": (Filter(has_location=False, labels=["cat", "dog"]),
                    lambda p: p["location"] is None and p["label"] in ("cat", "dog")),
    "photo_combined": (
        Filter(taken_after="2021-06-01", near=(48.5, 2.0, 90), labels=["cat", "dog", "car"]),
        lambda p: p["taken_at"] is not None and p["taken_at"] >= day_start("2021-06-01")
        and p["location"] is not None and haversine_km(48.5, 2.0, p["location"]["lat"], p["location"]["lon"]) <= 90
        and p["label"] in ("cat", "dog", "car"),
    ),
}


def test_date_range_ends_are_inclusive_days():
    inside = FILTERS["taken_between"][1]
    assert [inside(PAYLOADS[j]) for j in range(3)] == [True, True, False]


@pytest.mark.parametrize(("center", "radius"), [((*PARIS,), 60), ((48.5, 2.0), 90)])
def test_no_position_lies_on_a_near_circle(center, radius):
    # Backends round differently; a point a metre from the circle would make them disagree legitimately.
    d = [haversine_km(*center, p["location"]["lat"], p["location"]["lon"]) for p in PAYLOADS if p["location"]]
    assert min(abs(x - radius) for x in d) > 0.05


@pytest.mark.parametrize("name", list(FILTERS))
def test_each_filter_returns_exactly_the_matching_points(ro_store, name):
    flt, keep = FILTERS[name]
    assert name == "empty_filter" or 0 < sum(keep(p) for p in PAYLOADS) < N  # a condition that selects
    expected = brute_force(XQ, 15, keep)
    got = ro_store.search(XQ, 15, filter=flt)
    assert [hit_ids(r) for r in got] == expected
    for row in got:
        assert all(flt.matches(h.payload) for h in row)


@pytest.mark.parametrize("name", ["taken_between", "cameras", "near", "has_location", "no_location",
                                  "photo_combined"])
def test_photo_filters_return_every_match_when_k_is_large(ro_store, name):
    flt, keep = FILTERS[name]
    assert {h.id for h in ro_store.search(XQ[0], N, filter=flt)} == {int(IDS[j]) for j, p in enumerate(PAYLOADS)
                                                                       if keep(p)}


def test_filter_with_few_matches_returns_all_of_them(ro_store):
    keep = FILTERS["combined"][1]
    n_match = sum(keep(p) for p in PAYLOADS)
    assert 0 < n_match < 200
    got = ro_store.search(XQ[0], 200, filter=FILTERS["combined"][0])
    assert sorted(hit_ids(got)) == sorted(IDS[[keep(p) for p in PAYLOADS]].tolist())


def test_empty_list_matches_nothing(ro_store):
    assert ro_store.search(XQ[0], 5, filter=Filter(labels=[])) == []
    assert ro_store.search(XQ[:2], 5, filter=Filter(kmeans_clusters=[])) == [[], []]


def test_get_vectors_and_payloads_in_asked_order(ro_store):
    pick = [int(IDS[7]), int(IDS[0]), int(IDS[42])]
    np.testing.assert_allclose(ro_store.get_vectors(pick), XB[[7, 0, 42]], atol=1e-6)
    assert ro_store.get_payloads(pick)[1]["predicted_prob"] == PAYLOADS[0]["predicted_prob"]
    assert ro_store.get_vectors([]).shape == (0, DIM)
    with pytest.raises(KeyError):
        ro_store.get_vectors([int(IDS[0]), 10 * N + 5])


def test_delete_removes(store):
    gone = [int(i) for i in IDS[:10]]
    store.delete(gone + [10 * N + 99])  # unknown ids are ignored
    assert store.count() == N - 10
    assert not set(gone) & set(store.ids().tolist())
    for row in store.search(XB[:10], 5):
        assert not set(gone) & set(hit_ids(row))
    with pytest.raises(KeyError):
        store.get_payloads(gone[:1])


def test_upsert_replaces_vector_and_payload(store):
    target = int(IDS[5])
    store.upsert([target], -XB[5:6], [{"label": "new"}])
    assert store.count() == N
    assert store.get_payloads([target]) == [{"label": "new"}]
    np.testing.assert_allclose(store.get_vectors([target])[0], -XB[5], atol=1e-6)
    assert hit_ids(store.search(-XB[5], 1)) == [target]


def test_set_payload_is_partial_and_changes_filters(store):
    moved = [int(i) for i in IDS[20:30]]
    store.set_payload(moved, [{"kmeans_cluster": 99, "predicted_prob": 0.5} for _ in moved])
    got = store.search(XQ[0], 50, filter=Filter(kmeans_clusters=[99]))
    assert sorted(hit_ids(got)) == sorted(moved)
    after = store.get_payloads(moved)
    assert [p["source_folder"] for p in after] == [PAYLOADS[i]["source_folder"] for i in range(20, 30)]
    assert all(p["kmeans_cluster"] == 99 for p in after)
    # Per-id updates, as a classifier re-fit produces them.
    store.set_payload(moved[:2], [{"predicted_label": "x1"}, {"predicted_label": "x2"}])
    assert [p["predicted_label"] for p in store.get_payloads(moved[:2])] == ["x1", "x2"]


def test_set_payload_unknown_id_changes_nothing(store):
    with pytest.raises(KeyError):
        store.set_payload([int(IDS[0]), 10 * N + 7], [{"label": "zzz"}, {"label": "zzz"}])
    assert store.search(XQ[0], 5, filter=Filter(labels=["zzz"])) == []


def test_refuses_bad_vectors(store):
    with pytest.raises(StoreMismatchError):
        store.upsert([1], np.ones((1, DIM + 1), np.float32) / np.sqrt(DIM + 1))
    with pytest.raises(StoreMismatchError):
        store.search(np.ones(DIM - 1, np.float32), 3)
    with pytest.raises(ValueError, match="L2-normalised"):
        store.upsert([1], np.ones((1, DIM), np.float32))
    with pytest.raises(ValueError, match="repeat"):
        store.upsert([1, 1], XB[:2])
    assert store.count() == N


def test_store_for_another_backbone_is_refused(backend, store):
    with pytest.raises(StoreMismatchError, match="othernet"):
        backend.open(OTHER)
    with pytest.raises(StoreMismatchError):
        backend.open(BackboneId(INFO.name, DIM * 2, INFO.weights_sha256))


def test_reopen_keeps_everything(backend, store):
    if not backend.persistent:
        pytest.skip("in-memory client has nothing to reopen")
    store.set_payload([int(IDS[3])], [{"kmeans_cluster": 77}])
    store.delete([int(IDS[4])])
    before = [hit_ids(r) for r in store.search(XQ, 10)]
    store.close()
    again = backend.open(INFO)
    assert again.count() == N - 1
    assert [hit_ids(r) for r in again.search(XQ, 10)] == before
    assert hit_ids(again.search(XQ[0], 5, filter=Filter(kmeans_clusters=[77]))) == [int(IDS[3])]
    np.testing.assert_allclose(again.get_vectors([int(IDS[9])])[0], XB[9], atol=1e-6)


def test_second_instance_sees_writes(backend, store):
    """Another handle on the same storage (another process, in real use) sees committed writes."""
    if not backend.persistent:
        pytest.skip("one client, one collection: nothing to compare")
    other = backend.open(INFO)
    assert other.count() == N
    store.delete([int(IDS[0])])
    assert other.count() == N - 1
    other.set_payload([int(IDS[1])], [{"label": "seen"}])
    assert store.get_payloads([int(IDS[1])])[0]["label"] == "seen"


# ---- recommend: Qdrant's best_score strategy on every backend ---------------------------------------


def reference_recommend(
    positive: list[int], negative: list[int], k: int, keep: Callable[[dict], bool] | None = None,
    gone: frozenset[int] = frozenset(),
) -> list[tuple[int, float]]:
    """(id, score) best first, by Qdrant's best_score rule as its source states it (reco_query.rs
    `RecoBestScoreQuery::score_by`, common::math `scaled_fast_sigmoid`), written out here in float64 and
    independently of `index.best_score`: p = max similarity to a positive, q = max to a negative (-inf
    without negatives); sigmoid(p) if p > q else -sigmoid(q), sigmoid(x) = 0.5 * (x / (1 + |x|) + 1)."""

    def sigmoid(x: float) -> float:
        return 0.5 * (x / (1.0 + abs(x)) + 1.0)

    xb = XB.astype(np.float64)
    scored = []
    for j, i in enumerate(IDS.tolist()):
        if i in positive or i in negative or i in gone or (keep is not None and not keep(PAYLOADS[j])):
            continue
        p = max(float(xb[j] @ xb[POS[e]]) for e in positive)
        q = max((float(xb[j] @ xb[POS[e]]) for e in negative), default=-np.inf)
        assert abs(p - q) > 1e-4, "a point is about as near a positive as a negative; pick other examples"
        scored.append((i, sigmoid(p) if p > q else -sigmoid(q)))
    scored.sort(key=lambda t: -t[1])
    return scored[:k]


def assert_no_near_ties(expected: list[tuple[int, float]]) -> None:
    gaps = np.diff([s for _, s in expected])
    assert np.all(np.abs(gaps) > 1e-5), "reference has near-ties; pick other examples"


RECOMMEND_CASES = {
    "one_positive": ([int(IDS[0])], []),
    "positives_and_a_negative": ([int(IDS[1]), int(IDS[2])], [int(IDS[3])]),
    "a_positive_and_negatives": ([int(IDS[4])], [int(IDS[5]), int(IDS[6]), int(IDS[7])]),
}


def assert_same_hits(got: list[Hit], expected: list[tuple[int, float]]) -> None:
    assert hit_ids(got) == [i for i, _ in expected]
    np.testing.assert_allclose([h.score for h in got], [s for _, s in expected], atol=1e-5)


@pytest.mark.parametrize("case", list(RECOMMEND_CASES))
def test_recommend_top_k_matches_best_score_reference(ro_store, case):
    positive, negative = RECOMMEND_CASES[case]
    expected = reference_recommend(positive, negative, 10)
    assert_no_near_ties(expected)
    got = ro_store.recommend(positive, negative, 10)
    assert all(isinstance(h, Hit) for h in got)
    assert_same_hits(got, expected)
    top = PAYLOADS[POS[got[0].id]]
    assert got[0].payload == {k: v.item() if isinstance(v, np.generic) else v for k, v in top.items()}


@pytest.mark.parametrize("case", list(RECOMMEND_CASES))
def test_recommend_scores_every_point_and_excludes_the_examples(ro_store, case):
    positive, negative = RECOMMEND_CASES[case]
    expected = dict(reference_recommend(positive, negative, N))
    got = ro_store.recommend(positive, negative, N + 10)
    assert len(got) == N - len(positive) - len(negative)
    assert sorted(hit_ids(got)) == sorted(expected)  # every point but the examples
    np.testing.assert_allclose([h.score for h in got], [expected[h.id] for h in got], atol=1e-5)
    scores = [h.score for h in got]
    assert scores == sorted(scores, reverse=True)
    if negative:  # both branches of best_score are exercised: nearer a positive (> 0), nearer a negative (< 0)
        assert scores[0] > 0 > scores[-1]
    else:
        assert all(0 < s < 1 for s in scores)


@pytest.mark.parametrize("name", ["labels", "min_confidence", "combined", "kmeans_clusters", "empty_filter",
                                  "taken_between", "cameras", "near", "has_location"])
def test_recommend_respects_filter(ro_store, name):
    flt, keep = FILTERS[name]
    positive, negative = RECOMMEND_CASES["positives_and_a_negative"]
    expected = reference_recommend(positive, negative, 15, keep)
    assert_no_near_ties(expected)
    got = ro_store.recommend(positive, negative, 15, filter=flt)
    assert_same_hits(got, expected)
    assert all(flt.matches(h.payload) for h in got)


def test_recommend_filter_matching_nothing(ro_store):
    assert ro_store.recommend([int(IDS[0])], [], 5, filter=Filter(labels=[])) == []


def test_recommend_errors(ro_store):
    unknown = 10 * N + 5
    with pytest.raises(KeyError):
        ro_store.recommend([int(IDS[0]), unknown], [], 5)
    with pytest.raises(KeyError):
        ro_store.recommend([int(IDS[0])], [unknown], 5)
    with pytest.raises(ValueError, match="positive"):
        ro_store.recommend([], [int(IDS[0])], 5)
    with pytest.raises(ValueError, match="positive"):
        ro_store.recommend([], [], 5)
    with pytest.raises(ValueError):
        ro_store.recommend([int(IDS[0])], [], 0)


def test_recommend_after_writes(store):
    """Deleted points are gone and replaced vectors count (for FAISS: rows and ids stay aligned)."""
    gone = frozenset(int(i) for i in IDS[10:40])
    store.delete(sorted(gone))
    positive, negative = RECOMMEND_CASES["positives_and_a_negative"]
    expected = reference_recommend(positive, negative, 10, gone=gone)
    assert_no_near_ties(expected)
    assert_same_hits(store.recommend(positive, negative, 10), expected)
    with pytest.raises(KeyError):
        store.recommend([min(gone)], [], 5)
    # An example's replaced vector is what it is compared by: point 50 becomes point 60's twin.
    store.upsert([int(IDS[50])], XB[60:61], [PAYLOADS[50]])
    got = store.recommend([int(IDS[50])], [], 3)
    assert got[0].id == int(IDS[60])
    assert got[0].score == pytest.approx(0.5 * (1.0 / 2.0 + 1.0), abs=1e-5)  # similarity 1 -> sigmoid 0.75
