"""Automatic tags from a backbone's ImageNet-1k head, and the words that find them (WordNet 3.0 names).

The vocabulary (data/imagenet_vocabulary.json, made by data/make_imagenet_vocabulary.py from Princeton WordNet
3.0) holds the 1000 classes and every broader synset above them, each with its synonyms (lemmas) and parents.
A class's *terms* are its own name and the names of all its broader synsets, so an image tagged "Pekinese" is
found by "dog", "canine", "carnivore", "mammal" and "animal". Stdlib and numpy only.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

VOCABULARY_FILE = Path(__file__).with_name("data") / "imagenet_vocabulary.json"
N_CLASSES = 1000
# Tags kept per image: at most TOP_K, each with probability >= MIN_PROB. MIN_PROB was chosen on Caltech-101
# with EfficientNet-Lite2: the best F1 of tag precision and recall on the mapped classes, with the best mean
# P@10 and AP@50 of the search by words (benchmarks/bench_text_search.py; docs/tags.md has the figures).
TOP_K = 5
MIN_PROB = 0.05
MAX_PHRASE = 4  # the longest lemma, in words, a query is matched against ("great white shark")


class UnknownWords(ValueError):
    """Query words that name no tag; `suggestions` maps each to the closest known words."""

    def __init__(self, suggestions: dict[str, list[str]]):
        self.suggestions = suggestions
        parts = [f"{w!r} (close: {', '.join(close)})" if close else repr(w) for w, close in suggestions.items()]
        super().__init__(f"no tag is called {'; '.join(parts)}")


@dataclass(frozen=True)
class TagPolicy:
    """Which of an image's class probabilities become tags: the `top_k` most probable with prob >= `min_prob`."""

    top_k: int = TOP_K
    min_prob: float = MIN_PROB

    def select(self, probs: np.ndarray, names: Sequence[str]) -> list[list[tuple[str, float]]]:
        """probs: (n, n_classes) rows summing to 1 -> per row [(class name, prob)], most probable first."""
        probs = np.asarray(probs, dtype=np.float32)
        k = min(self.top_k, probs.shape[1])
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(names[c], round(float(row[c]), 6)) for c in cols if row[c] >= self.min_prob]
                for row, cols in zip(probs, top, strict=True)]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _plural_stems(word: str) -> list[str]:
    """Singular guesses for an English plural: 'puppies' -> 'puppy', 'foxes' -> 'fox', 'wolves' -> 'wolf'."""
    out = []
    if word.endswith("ies") and len(word) > 4:
        out.append(word[:-3] + "y")
    if word.endswith("ves") and len(word) > 4:
        out += [word[:-3] + "f", word[:-3] + "fe"]
    if word.endswith("es") and len(word) > 3:
        out.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss") and len(word) > 2:
        out.append(word[:-1])
    if word.endswith("men"):
        out.append(word[:-3] + "man")
    return out


class Vocabulary:
    """The ImageNet-1k classes and their WordNet terms. `classes[i]` names the head's output i."""

    def __init__(self, data: dict):
        synsets = data["synsets"]
        self.wnids: list[str] = list(data["classes"])
        self.classes: list[str] = [synsets[w]["name"] for w in self.wnids]
        self.class_index = {name: i for i, name in enumerate(self.classes)}
        names = {wnid: s["name"] for wnid, s in synsets.items()}
        # Each class's terms: itself and every synset above it.
        self._terms: dict[str, tuple[str, ...]] = {}
        covered: dict[str, set[int]] = {}
        for i, wnid in enumerate(self.wnids):
            seen, todo = set(), [wnid]
            while todo:
                w = todo.pop()
                if w not in seen:
                    seen.add(w)
                    todo.extend(synsets[w]["parents"])
            self._terms[self.classes[i]] = tuple(sorted(names[w] for w in seen))
            for w in seen:
                covered.setdefault(names[w], set()).add(i)
        self._covered = {name: frozenset(c) for name, c in covered.items()}
        # Word (lower case, spaces) -> the terms it names: every lemma, and every term's own name.
        words: dict[str, set[str]] = {}
        for s in synsets.values():
            for lemma in [*s["lemmas"], s["name"]]:
                words.setdefault(lemma.lower(), set()).add(s["name"])
        self._words = {w: tuple(sorted(t)) for w, t in words.items()}

    def terms(self, tag: str) -> tuple[str, ...]:
        """A class name and the names of all its broader synsets (KeyError for an unknown class)."""
        return self._terms[tag]

    def expand(self, tags: Iterable[str]) -> list[str]:
        """Sorted union of `terms` over `tags` (the payload's `tags`); names that are no class are kept as they
        are (a head with other classes)."""
        out: set[str] = set()
        for tag in tags:
            out.update(self._terms.get(tag, (tag,)))
        return sorted(out)

    def classes_under(self, term: str) -> frozenset[int]:
        """Indexes of the classes at or under the term `term` (a synset name)."""
        return self._covered.get(term, frozenset())

    def lookup(self, word: str) -> tuple[str, ...]:
        """The terms a word names, case-insensitive, plurals tried as singulars; () when none."""
        w = " ".join(word.lower().replace("_", " ").split())
        for candidate in [w, *_plural_stems(w)]:
            if candidate in self._words:
                return self._words[candidate]
        return ()

    def close_words(self, word: str, n: int = 5) -> list[str]:
        return difflib.get_close_matches(word.lower(), list(self._words), n=n, cutoff=0.6)

    def parse(self, query: str) -> list[tuple[str, tuple[str, ...]]]:
        """(words, terms) per concept of a query, longest known phrase first ("golden retriever" is one concept,
        "hot dog" too). UnknownWords lists every word that names no tag, with the closest known words."""
        tokens = re.findall(r"[\w'-]+", query.lower())
        out, unknown, i = [], {}, 0
        while i < len(tokens):
            for n in range(min(MAX_PHRASE, len(tokens) - i), 0, -1):
                phrase = " ".join(tokens[i : i + n])
                terms = self.lookup(phrase)
                if terms:
                    out.append((phrase, terms))
                    i += n
                    break
            else:
                unknown[tokens[i]] = self.close_words(tokens[i])
                i += 1
        if unknown:
            raise UnknownWords(unknown)
        if not out:
            raise ValueError("the query has no words")
        return out

    def classes_for(self, terms: Iterable[str]) -> frozenset[int]:
        return frozenset().union(*(self.classes_under(t) for t in terms))


@cache
def imagenet_vocabulary() -> Vocabulary:
    return Vocabulary(json.loads(VOCABULARY_FILE.read_text(encoding="utf-8")))
