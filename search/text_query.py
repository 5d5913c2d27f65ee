"""Search by words: a query's words -> the ImageNet classes they name (WordNet lemmas and broader terms) -> the
images whose automatic tags are among them, ranked by tag probability.

- A word or phrase ("dog", "golden retriever", "hot dog") names WordNet terms by their lemmas (models/tags.py,
  `Vocabulary.parse`: longest known phrase first, plurals tried as singulars); a term covers every class at or
  under it, so "dog" covers the 118 breeds of ImageNet-1k and "bird" all 59 birds.
- An image's score for one concept is the summed probability of its kept tags under that concept (its tags are
  its top classes above models/tags.py's threshold, so this is the head's probability of the concept, less what
  fell below the threshold).
- Several concepts combine with AND: an image must match every one, and scores multiply ("dog umbrella" ranks
  images tagged with a dog and an umbrella, most probable pair first).
- A word that names no tag raises `UnknownWords` with the closest known words (difflib); filler words
  ("a", "photo of", ...) are dropped first.

`TagIndex` holds every indexed image's tags as a sparse image x class matrix (from the catalogue:
`db.collection.image_tag_rows`); a query is a few column sums, a product and a partial sort. The `tags` payload
field (search/payload.py) filters on the same terms in every vector store, for searches by image.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from imgsearch.models.tags import UnknownWords, Vocabulary, imagenet_vocabulary

__all__ = ["Concept", "TagIndex", "TextQuery", "UnknownWords", "parse_query", "tag_classes"]

# Dropped from a query before it is matched: they name nothing an image is tagged with.
FILLER = frozenset({"a", "an", "the", "of", "and", "with", "in", "on", "at", "some", "my", "photo", "photos",
                    "picture", "pictures", "image", "images", "showing"})


@dataclass(frozen=True)
class Concept:
    """One word or phrase of a query, the WordNet terms it names, and the classes at or under them."""

    words: str
    terms: tuple[str, ...]
    classes: frozenset[int]


@dataclass(frozen=True)
class TextQuery:
    text: str
    concepts: tuple[Concept, ...]

    @property
    def terms(self) -> list[str]:
        """Every term of every concept, sorted (a `tags` filter on them holds images matching any concept)."""
        return sorted({t for c in self.concepts for t in c.terms})

    def describe(self, vocabulary: Vocabulary | None = None) -> str:
        voc = vocabulary or imagenet_vocabulary()
        parts = []
        for c in self.concepts:
            names = sorted(voc.classes[i] for i in c.classes)
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            parts.append(f"{c.words!r} ({len(names)} class{'es' if len(names) != 1 else ''}: {shown})")
        return " and ".join(parts)


def parse_query(text: str, vocabulary: Vocabulary | None = None) -> TextQuery:
    """The concepts of `text`. UnknownWords when a word names no tag (with close known words); ValueError when
    nothing is left to search for."""
    voc = vocabulary or imagenet_vocabulary()
    words = [w for w in re.findall(r"[\w'-]+", text.lower()) if w not in FILLER]
    if not words:
        raise ValueError("the query has no words to search for")
    concepts = []
    for phrase, terms in voc.parse(" ".join(words)):
        classes = voc.classes_for(terms)
        if classes:  # a lemma of a term with no class under it cannot match; the other concepts still apply
            concepts.append(Concept(phrase, terms, classes))
    if not concepts:
        raise ValueError(f"no image class falls under {text!r}")
    return TextQuery(text, tuple(concepts))


def tag_classes(terms: Iterable[str], vocabulary: Vocabulary | None = None) -> list[str]:
    """The class names (what the catalogue's image_tags hold) at or under `terms`, sorted: how a `tags` condition
    on terms reads the catalogue (`db.collection.browse`)."""
    voc = vocabulary or imagenet_vocabulary()
    terms = list(terms)
    return sorted({voc.classes[i] for i in voc.classes_for(terms)} | {t for t in terms if t in voc.class_index})


@dataclass(frozen=True)
class TextHit:
    id: int
    score: float  # product over the query's concepts of the image's tag probability under each


class TagIndex:
    """Every image's tags as an (images x classes) sparse matrix of probabilities, ranked per query."""

    def __init__(self, image_ids: Sequence[int], tags: Sequence[str], probs: Sequence[float],
                 vocabulary: Vocabulary | None = None):
        """One entry per (image, tag) (`db.collection.image_tag_rows`); tags that are no ImageNet class are
        ignored."""
        from scipy import sparse

        self.vocabulary = voc = vocabulary or imagenet_vocabulary()
        cols = np.array([voc.class_index.get(t, -1) for t in tags], dtype=np.int64)
        keep = cols >= 0
        ids = np.asarray(image_ids, dtype=np.int64)[keep]
        self.ids, rows = np.unique(ids, return_inverse=True)
        self.matrix = sparse.csc_matrix(
            (np.asarray(probs, dtype=np.float32)[keep], (rows, cols[keep])),
            shape=(len(self.ids), len(voc.classes)),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, query: TextQuery) -> np.ndarray:
        """(n_images,) float32: product over concepts of the summed tag probability under each (0: no match)."""
        out = np.ones(len(self.ids), dtype=np.float32)
        for concept in query.concepts:
            cols = np.fromiter(sorted(concept.classes), dtype=np.int64)
            out *= np.asarray(self.matrix[:, cols].sum(axis=1), dtype=np.float32).ravel()
        return out

    def search(self, query: TextQuery | str, k: int = 10,
               accept: Callable[[list[int]], Sequence[bool]] | None = None) -> list[TextHit]:
        """The k best images for the query, best first (ties by id). `accept(ids)` says which of a list of
        candidates pass the caller's other filters; candidates are offered in rank order, in pages, until k
        pass or none are left."""
        if isinstance(query, str):
            query = parse_query(query, self.vocabulary)
        scores = self.scores(query)
        matched = np.flatnonzero(scores > 0)
        order = matched[np.lexsort((self.ids[matched], -scores[matched]))]
        if accept is None:
            order = order[:k]
            return [TextHit(int(self.ids[i]), float(scores[i])) for i in order]
        hits: list[TextHit] = []
        page = max(4 * k, 64)
        for start in range(0, len(order), page):
            part = order[start : start + page]
            ids = [int(self.ids[i]) for i in part]
            for i, image_id, ok in zip(part, ids, accept(ids), strict=True):
                if ok:
                    hits.append(TextHit(image_id, float(scores[i])))
                    if len(hits) == k:
                        return hits
        return hits
