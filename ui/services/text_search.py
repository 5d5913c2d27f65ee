"""Search by words, for every front end: the CLI's `search --text`, the API's `GET /v1/search/text` and the app's
"Search by words" box.

search/text_query.py ranks the catalogue's automatic tags (words -> WordNet terms -> ImageNet classes -> images,
by tag probability); the filters are applied to the ranked candidates from this backbone's payloads (the FAISS
mirror), in rank order, until `k` pass. Each hit comes with its own tags (the leaf classes with their
probabilities, most probable first), from the same catalogue rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from imgsearch.search.index import Hit, VectorIndex
from imgsearch.search.payload import Filter
from imgsearch.search.service import SearchResult, collapse_duplicates
from imgsearch.search.text_query import TagIndex, TextQuery, UnknownWords, parse_query
from imgsearch.ui.services.errors import AppError

__all__ = ["TextSearchError", "TextSearchResponse", "load_tag_index", "parse_words", "search_words", "top_tags"]

Tags = list[tuple[str, float]]


class TextSearchError(AppError, ValueError):
    """Words that name no tag (`suggestions`: each unknown word -> the closest known words), or no words at all."""

    code = "unknown_words"
    status = 422

    def __init__(self, message: str, suggestions: dict[str, list[str]] | None = None):
        super().__init__(message, code="unknown_words" if suggestions else "invalid_request")
        self.suggestions = suggestions or {}


@dataclass
class TextSearchResponse:
    query: TextQuery
    results: list[SearchResult]  # `score`: the tag probability of the words (a product over several concepts)
    tags: dict[int, Tags] = field(default_factory=dict)  # each result's own tags, most probable first
    search_ms: float = 0.0
    filtered: bool = False

    def describe(self) -> str:
        return self.query.describe()


def parse_words(text: str) -> TextQuery:
    """The query's concepts; TextSearchError (a 422 in the API) naming close known words for an unknown one."""
    try:
        return parse_query(text)
    except UnknownWords as exc:
        raise TextSearchError(str(exc), exc.suggestions) from None
    except ValueError as exc:
        raise TextSearchError(str(exc)) from None


def load_tag_index(Session) -> TagIndex:
    """Every indexed image's tags from the catalogue, as search/text_query.py ranks them."""
    from imgsearch.db.collection import image_tag_rows

    with Session() as s:
        return TagIndex(*image_tag_rows(s))


def top_tags(index: TagIndex, image_id: int, n: int | None = None) -> Tags:
    """One image's tags (class, probability), most probable first, from `index` ([] for an untagged image)."""
    import numpy as np

    row = int(np.searchsorted(index.ids, image_id))
    if row >= len(index.ids) or index.ids[row] != image_id:
        return []
    cells = index.matrix[row, :].tocoo()
    names = index.vocabulary.classes
    tags = sorted(((names[c], float(p)) for c, p in zip(cells.col, cells.data, strict=True)), key=lambda t: -t[1])
    return tags[:n] if n is not None else tags


def search_words(Session, faiss: VectorIndex, text: str | TextQuery, k: int = 10, flt: Filter | None = None,
                 collapse: bool = False, offset: int = 0, index: TagIndex | None = None) -> TextSearchResponse:
    """The images tagged with the words of `text`, most probable first: results `offset` to `offset + k` among
    those that pass `flt` (the payloads of `faiss`, this backbone's stores). `index`: a TagIndex already loaded
    (the app keeps one per collection version); by default the catalogue's tags are read now."""
    query = parse_words(text) if isinstance(text, str) else text
    t = time.perf_counter()
    index = index if index is not None else load_tag_index(Session)
    stored = set(faiss.ids().tolist())
    payloads: dict[int, dict] = {}
    active = flt if flt is not None and not flt.is_empty() else None
    filtered = active is not None

    def accept(ids: list[int]) -> list[bool]:
        present = [i for i in ids if i in stored and i not in payloads]
        payloads.update(zip(present, faiss.get_payloads(present), strict=True))
        return [i in payloads and (active is None or active.matches(payloads[i])) for i in ids]

    want = offset + k
    hits = index.search(query, want * 3 if collapse else want, accept)
    results = [SearchResult.from_hit(Hit(h.id, h.score, payloads[h.id])) for h in hits]
    if collapse:
        results = collapse_duplicates(results)[:want]
    results = results[offset:]
    tags = {r.id: top_tags(index, r.id) for r in results}
    return TextSearchResponse(query, results, tags, (time.perf_counter() - t) * 1000, filtered)
