"""The FAISS mirror's segment files: a write costs its batch, merges and compaction keep every reader's state,
stores of the single-file format open and migrate, and the approximate index re-ranks exactly."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from imgsearch.models.identity import BackboneId
from imgsearch.search import faiss_ann
from imgsearch.search import faiss_index as fi
from imgsearch.search.faiss_index import FaissIndex
from imgsearch.search.faiss_segments import MANIFEST_NAME, Manifest, Segment, merge, tail_to_merge
from imgsearch.search.index import Filter, StoreDamagedError

DIM = 16
INFO = BackboneId("testnet", DIM, "ab" * 32)


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def state(index: FaissIndex) -> dict[int, tuple[tuple[float, ...], str]]:
    """Everything a reader can see: id -> (vector, payload)."""
    ids = index.ids().tolist()
    vecs = index.get_vectors(ids) if ids else np.zeros((0, DIM))
    return {i: (tuple(np.round(v, 6)), json.dumps(p, sort_keys=True))
            for i, v, p in zip(ids, vecs, index.get_payloads(ids), strict=True)}


def segment_files(folder):
    return sorted(p.name for p in folder.glob("seg-*.npz"))


def test_a_write_adds_one_segment_the_size_of_its_batch_and_leaves_the_others(tmp_path):
    rng = np.random.default_rng(0)
    index = FaissIndex(tmp_path, INFO)
    for b in range(5):
        index.upsert(list(range(b * 100, b * 100 + 100)), unit_rows(rng, 100), [{"label": f"c{b}"}] * 100)
    before = {p.name: (p.stat().st_ino, p.stat().st_size) for p in tmp_path.glob("seg-*.npz")}
    index.upsert(list(range(1000, 1010)), unit_rows(rng, 10), [{"label": "new"}] * 10)
    after = {p.name: (p.stat().st_ino, p.stat().st_size) for p in tmp_path.glob("seg-*.npz")}
    new = set(after) - set(before)
    assert len(new) == 1 and all(after[n] == before[n] for n in before)  # nothing rewritten
    assert after[new.pop()][1] < 10 * DIM * 4 + 4096  # the batch's records, not the collection's
    assert index.count() == 510
    index.close()


@pytest.mark.slow
def test_merges_keep_the_segment_count_logarithmic_and_readers_in_step(tmp_path):
    rng = np.random.default_rng(1)
    writer, reader = FaissIndex(tmp_path, INFO), FaissIndex(tmp_path, INFO)
    expected: dict[int, dict] = {}
    for b in range(70):
        ids = list(range(b * 4, b * 4 + 4))
        writer.upsert(ids, unit_rows(rng, 4), [{"batch": b}] * 4)
        expected.update({i: {"batch": b} for i in ids})
        if b % 5 == 4:  # deletes, payload sets and re-upserts across merge boundaries
            gone = list(expected)[::17][:3]
            writer.delete(gone)
            for i in gone:
                del expected[i]
            some = list(expected)[::11][:4]
            writer.set_payload(some, [{"seen": b}] * len(some))
            for i in some:
                expected[i] = {**expected[i], "seen": b}
            again = list(expected)[1::13][:2]
            writer.upsert(again, unit_rows(rng, len(again)), [{"again": b}] * len(again))
            expected.update({i: {"again": b} for i in again})
        if b % 3 == 0:  # the reader catches up at various points, through merges it did not see happen
            assert {i: json.loads(p) for i, (_, p) in state(reader).items()} == expected
    assert {i: json.loads(p) for i, (_, p) in state(reader).items()} == expected
    assert state(reader) == state(writer) == state(fresh := FaissIndex(tmp_path, INFO))
    manifest = Manifest.read(tmp_path)
    assert len(manifest.segments) < 20 and segment_files(tmp_path) == sorted(
        f"seg-{s['lo']:010d}-{s['hi']:010d}.npz" for s in manifest.segments)  # merged-away files are gone
    for x in (writer, reader, fresh):
        x.close()


def test_merge_keeps_the_last_record_of_each_id():
    v = np.eye(DIM, dtype=np.float32)
    a = Segment.single(1, DIM, puts=([1, 2, 3], v[:3], [{"a": 1}, {"a": 2}, {"a": 3}]))
    b = Segment.single(2, DIM, deletes=[2, 9])
    c = Segment.single(3, DIM, sets=([1, 7], [{"a": 10}, {"b": 7}]))
    d = Segment.single(4, DIM, puts=([2], v[5:6], [{"again": True}]))
    m = merge([a, b, c, d], DIM)
    puts = {int(i): (p, int(np.argmax(m.vectors[j])), int(q))
            for j, (i, p, q) in enumerate(zip(m.put_ids, m.put_payloads, m.put_seq, strict=True))}
    assert puts == {1: ({"a": 10}, 0, 3), 2: ({"again": True}, 5, 4), 3: ({"a": 3}, 2, 1)}
    assert m.del_ids.tolist() == [9] and m.set_ids.tolist() == [7] and list(m.set_payloads) == [{"b": 7}]
    assert (m.lo, m.hi) == (1, 4)


def test_tail_merge_policy_bounds_work_and_never_strands_a_small_segment():
    seg = [{"lo": 0, "hi": 0, "records": r} for r in [4096] + [256] * 7 + [1]]
    assert tail_to_merge(seg, 8, 32_768) == 8  # a one-record delete does not block merging the 256s
    assert tail_to_merge(seg[:5], 8, 32_768) == 0
    big = [{"lo": 0, "hi": 0, "records": 30_000}] * 8
    assert tail_to_merge(big, 8, 32_768) == 0  # larger than one commit may rewrite: left to compact


def test_compact_makes_one_segment_a_new_generation_and_removes_stray_files(tmp_path):
    rng = np.random.default_rng(2)
    writer, reader = FaissIndex(tmp_path, INFO), FaissIndex(tmp_path, INFO)
    for b in range(12):
        writer.upsert(list(range(b * 3, b * 3 + 3)), unit_rows(rng, 3), [{"b": b}] * 3)
    writer.delete([0, 4])
    assert reader.count() == 34
    (tmp_path / "seg-0000009999-0000009999.npz").write_bytes(b"left by a writer killed before its commit")
    before = state(writer)
    assert writer.compact() > 1
    assert len(Manifest.read(tmp_path).segments) == 1 and len(segment_files(tmp_path)) == 1
    assert state(reader) == state(writer) == before  # the reader loaded the new generation afresh
    writer.upsert([500], unit_rows(rng, 1))
    assert reader.count() == 35
    writer.close()
    reader.close()


def test_a_segment_written_but_never_committed_is_ignored_and_overwritten(tmp_path):
    rng = np.random.default_rng(3)
    index = FaissIndex(tmp_path, INFO)
    index.upsert([1, 2], unit_rows(rng, 2))
    # A writer killed between its segment and its manifest: the segment of the next seq, never listed.
    Segment.single(Manifest.read(tmp_path).last_seq + 1, DIM, puts=([3], unit_rows(rng, 1), [{}])).write(tmp_path)
    again = FaissIndex(tmp_path, INFO)
    assert again.ids().tolist() == [1, 2]
    again.upsert([4], unit_rows(rng, 1))
    assert FaissIndex(tmp_path, INFO).ids().tolist() == [1, 2, 4]
    index.close()
    again.close()


@pytest.mark.parametrize("name", [MANIFEST_NAME, "segment"])
def test_a_damaged_file_is_named(tmp_path, name):
    rng = np.random.default_rng(5)
    with FaissIndex(tmp_path, INFO) as index:
        index.upsert([1, 2], unit_rows(rng, 2))
    target = tmp_path / (name if name == MANIFEST_NAME else segment_files(tmp_path)[0])
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(StoreDamagedError, match=target.name):
        FaissIndex(tmp_path, INFO)
    target.unlink()
    with pytest.raises(StoreDamagedError, match=f"{target.name}.*missing"):
        FaissIndex(tmp_path, INFO)


def clustered(rng, n, dim=DIM, centres=20):
    c = unit_rows(rng, centres, dim)
    x = c[rng.integers(0, centres, n)] + 0.15 * unit_rows(rng, n, dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_approximate_index_is_built_past_the_threshold_and_re_ranks_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_ann, "EXACT_MAX_POINTS", 1000)
    rng = np.random.default_rng(6)
    xb = clustered(rng, 3000)
    payloads = [{"label": f"c{i % 5}", "n": i} for i in range(3000)]
    writer, reader = FaissIndex(tmp_path, INFO), FaissIndex(tmp_path, INFO)
    writer.upsert(list(range(900)), xb[:900], payloads[:900])
    assert writer._ann is None and not list(tmp_path.glob("ann-*"))  # exact below the threshold
    writer.upsert(list(range(900, 2000)), xb[900:2000], payloads[900:2000])
    assert writer.wait_for_index(60)  # built in the background
    assert writer._ann is not None and Manifest.read(tmp_path).ann["factory"] == "IVF64_HNSW32,SQ8"
    writer.upsert(list(range(2000, 2010)), xb[2000:2010], payloads[2000:2010])  # added to the index as it is
    assert Manifest.read(tmp_path).ann["trained_on"] == 2000
    assert reader.count() == 2010  # the reader holds the index now; what follows is added to its copy
    writer.upsert(list(range(2010, 3000)), xb[2010:], payloads[2010:])  # 2 sqrt(n) rounds to 128 lists: rebuilt
    assert writer.wait_for_index(60)
    assert Manifest.read(tmp_path).ann["factory"] == "IVF128_HNSW32,SQ8"
    writer.delete([5, 6])
    xq = clustered(rng, 50)
    exact = xq @ xb.T
    exact[:, [5, 6]] = -np.inf
    truth = np.argsort(-exact, axis=1)[:, :10]
    for store in (writer, reader):  # the reader loads the index file and adds the points it does not hold
        assert store._ann is not None
        found = store.search(xq, 10)
        recall = np.mean([len({h.id for h in hits} & set(t.tolist())) / 10
                          for hits, t in zip(found, truth, strict=True)])
        assert recall >= 0.95
        assert all(abs(h.score - float(xq[j] @ xb[h.id])) < 1e-5 for j, hits in enumerate(found) for h in hits)
        assert all(h.id not in (5, 6) for hits in found for h in hits)
        # Filtered search stays exact: every result and in the exact order.
        flt = Filter(labels=["c2"])
        hits = store.search(xq[0], 10, flt)
        keep = np.array([p["label"] == "c2" and i not in (5, 6) for i, p in enumerate(payloads)])
        assert [h.id for h in hits] == np.argsort(-np.where(keep, exact[0], -np.inf))[:10].tolist()
    writer.close()
    reader.close()


def test_flat_setting_never_builds_an_index_and_a_bad_setting_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_ann, "EXACT_MAX_POINTS", 10)
    rng = np.random.default_rng(7)
    with FaissIndex(tmp_path / "flat", INFO, index_type="Flat") as index:
        index.upsert(list(range(50)), unit_rows(rng, 50))
        assert index._ann is None
    with pytest.raises(ValueError, match="IMGSEARCH_FAISS_INDEX='IVFx'.*factory string"):
        FaissIndex(tmp_path / "bad", INFO, index_type="IVFx")


def test_write_estimate_is_the_batch_not_the_collection(tmp_path):
    rng = np.random.default_rng(8)
    with FaissIndex(tmp_path, INFO) as index:
        small = index.write_bytes(10)
        index.upsert(list(range(2000)), unit_rows(rng, 2000))
        assert index.write_bytes(10) == small
        before = sum(p.stat().st_size for p in tmp_path.iterdir())
        index.upsert(list(range(5000, 5010)), unit_rows(rng, 10))
        assert sum(p.stat().st_size for p in tmp_path.iterdir()) - before <= small


def test_memory_repack_keeps_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(fi, "QUERY_CHUNK", 3)
    rng = np.random.default_rng(9)
    with FaissIndex(tmp_path, INFO) as index:
        xb = unit_rows(rng, 6000)
        index.upsert(list(range(6000)), xb)
        index.upsert(list(range(0, 6000, 2)), xb[::2])  # 3000 replaced: past the repack threshold? not yet
        index.delete(list(range(1, 6000, 2)))  # 3000 more dead rows: repacked
        assert index._rows.dead == 0 and index.count() == 3000
        hits = index.search(xb[:7], 1)
        assert [h[0].id for h in hits[::2]] == [0, 2, 4, 6]


def test_reopening_parses_no_payload_until_one_is_read(tmp_path, monkeypatch):
    from imgsearch.search import faiss_payloads

    rng = np.random.default_rng(3)
    with FaissIndex(tmp_path / "s", INFO) as index:
        index.upsert(list(range(50)), unit_rows(rng, 50), [{"label": f"c{i % 5}", "n": i} for i in range(50)])
        index.set_payload([7], [{"label": "seven"}])
        before = state(index)
    parsed = []
    read = faiss_payloads.Texts.__getitem__
    monkeypatch.setattr(faiss_payloads.Texts, "__getitem__", lambda self, row: parsed.append(row) or read(self, row))
    with FaissIndex(tmp_path / "s", INFO) as index:
        assert index.count() == 50 and parsed == []  # opened: ids, vectors and payload offsets, no payload parsed
        hits = index.search(unit_rows(rng, 1)[0], 3)
        assert len(parsed) == 3 and all(set(h.payload) == {"label", "n"} for h in hits)
        assert state(index) == before and index.get_payloads([7]) == [{"label": "seven", "n": 7}]


def test_a_segment_of_the_format_before_reads_and_compacts_into_the_new_one(tmp_path):
    import zipfile

    rng = np.random.default_rng(4)
    with FaissIndex(tmp_path / "s", INFO) as index:
        index.upsert([1, 2, 3], unit_rows(rng, 3), [{"label": "a"}, {"label": "b"}, {}])
        index.set_payload([2], [{"quality": "ok"}])
        before = state(index)
    # Rewrite each segment as the format before wrote it: every payload of a segment in one JSON document.
    for path in (tmp_path / "s").glob("seg-*.npz"):
        seg = Segment.read(path, DIM)
        old = {"put": list(seg.put_payloads), "set": list(seg.set_payloads)}
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files if k not in ("payload_json", "payload_ends")}
        arrays["payloads"] = np.frombuffer(json.dumps(old).encode(), np.uint8)
        np.savez(path.with_suffix(".tmp.npz"), **arrays)
        path.with_suffix(".tmp.npz").replace(path)
        assert "payloads.npy" in zipfile.ZipFile(path).namelist()
    with FaissIndex(tmp_path / "s", INFO) as index:
        assert state(index) == before
        index.compact()
        assert state(index) == before
    (path,) = (tmp_path / "s").glob("seg-*.npz")
    assert "payload_json.npy" in zipfile.ZipFile(path).namelist()
    with FaissIndex(tmp_path / "s", INFO) as index:
        assert state(index) == before


def test_the_approximate_index_file_is_rewritten_as_vectors_pile_up_so_a_reopen_adds_few(tmp_path, monkeypatch):
    from imgsearch.search import faiss_commits

    monkeypatch.setattr(faiss_ann, "EXACT_MAX_POINTS", 1000)
    monkeypatch.setattr(faiss_commits, "ANN_CHECKPOINT_TAIL", 250)
    monkeypatch.setattr(faiss_commits, "ANN_CHECKPOINT_AT_CLOSE", 30)
    rng = np.random.default_rng(8)
    xb = clustered(rng, 2040)  # below 2,048 the index keeps its 64 lists (no rebuild)
    writer = FaissIndex(tmp_path, INFO)
    writer.upsert(list(range(1200)), xb[:1200])
    assert writer.wait_for_index(60)
    built = Manifest.read(tmp_path).ann
    for start in range(1200, 2000, 80):  # 800 more in batches: the file is rewritten after every 250 or so
        writer.upsert(list(range(start, start + 80)), xb[start:start + 80])
    during = Manifest.read(tmp_path).ann
    assert during["covers"] > built["covers"] and during["factory"] == built["factory"]
    assert 0 < writer._ann_tail() < 250 and len(list(tmp_path.glob("ann-*"))) == 1  # the old files went
    writer.upsert(list(range(2000, 2040)), xb[2000:2040])
    writer.close()  # 40 + the tail since the last rewrite >= 30: written at close
    after = Manifest.read(tmp_path).ann
    assert after["covers"] == Manifest.read(tmp_path).last_seq
    with FaissIndex(tmp_path, INFO) as reader:  # loads the file and has nothing to add
        assert reader.count() == 2040 and reader._ann is not None and reader._ann_tail() == 0
        xq = xb[2030:2040]
        assert [hits[0].id for hits in reader.search(xq, 1)] == list(range(2030, 2040))


def test_a_failed_rewrite_of_the_approximate_index_file_does_not_fail_the_commit(tmp_path, monkeypatch):
    # A full disk while rewriting the index file after a commit: the commit is already the store's, so the write
    # must return normally (a caller told it failed would retry or report lost images), and a reopen has it all.
    from imgsearch.search import faiss_commits

    monkeypatch.setattr(faiss_ann, "EXACT_MAX_POINTS", 1000)
    monkeypatch.setattr(faiss_commits, "ANN_CHECKPOINT_TAIL", 50)
    rng = np.random.default_rng(9)
    xb = clustered(rng, 1450)
    writer = FaissIndex(tmp_path, INFO)
    writer.upsert(list(range(1200)), xb[:1200])
    assert writer.wait_for_index(60)
    covers = Manifest.read(tmp_path).ann["covers"]

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(faiss_commits, "atomic_write", disk_full)
    writer.upsert(list(range(1200, 1450)), xb[1200:1450])  # past 1/8 of the store: the rewrite fails
    assert Manifest.read(tmp_path).ann["covers"] == covers  # not rewritten
    monkeypatch.undo()
    writer.close()
    with FaissIndex(tmp_path, INFO) as reader:
        assert reader.count() == 1450
        assert [hits[0].id for hits in reader.search(xb[1440:1450], 1)] == list(range(1440, 1450))


def _mapped_kib(folder) -> int:
    """KiB of this process's resident memory mapped from files in `folder` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps").read().splitlines():  # noqa: SIM115 - read at once
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            inside = len(head) > 5 and head[5].startswith(str(folder))
        elif inside and head and head[0] == "Rss:":
            total += int(head[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc/self/smaps")
def test_approximate_search_lets_go_of_the_vector_pages_it_re_ranked(tmp_path, monkeypatch):
    # Each query re-ranks 100 candidates read through the memory map; the page cache holds file data in large
    # folios, so without letting go a few hundred queries kept most of a 1M store mapped (docs/benchmarks.md).
    monkeypatch.setattr(faiss_ann, "EXACT_MAX_POINTS", 1000)
    rng = np.random.default_rng(7)
    xb = clustered(rng, 3000, dim=256)
    info = BackboneId("testnet", 256, "ab" * 32)
    with FaissIndex(tmp_path, info) as store:
        store.upsert(list(range(3000)), xb, [{"n": i} for i in range(3000)])
        assert store.wait_for_index(60) and store._ann is not None
        found = store.search(clustered(rng, 40, dim=256), 10)
        assert all(len(hits) == 10 for hits in found)
        assert _mapped_kib(tmp_path) == 0
