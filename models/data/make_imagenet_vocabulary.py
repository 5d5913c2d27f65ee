"""Build imagenet_vocabulary.json: the 1000 ImageNet-1k classes with their WordNet 3.0 synonyms and broader terms.

Run once by hand; the JSON is committed and read by models/tags.py (no WordNet needed at run time):

    apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb wnb   # Princeton WordNet 3.0, Debian's copy
    python models/data/make_imagenet_vocabulary.py wnb/usr/share/wordnet/data.noun wnids.txt

`wnids.txt`: the 1000 class wnids in class order, one a line (ImageNet-1k orders its classes by wnid; a wnid is
"n" + the synset's 8-digit offset in WordNet 3.0's data.noun). Stdlib only.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

# Synsets too general to search by: every class (or nearly) lies under them.
TOO_GENERAL = {"n00001740", "n00001930", "n00002137", "n00002684", "n00003553", "n00004258", "n00021939"}
# entity, physical entity, abstraction, object, whole, living thing, artifact


def read_nouns(data_noun: Path) -> dict[str, tuple[list[str], list[str]]]:
    """wnid -> (lemma names, hypernym wnids) for every noun synset of data.noun."""
    out = {}
    for line in data_noun.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):  # the licence header
            continue
        fields = line.split(" | ")[0].split()
        offset, n_words = fields[0], int(fields[3], 16)
        words = [fields[4 + 2 * i].replace("_", " ") for i in range(n_words)]
        # WordNet marks adjective positions as "(p)", "(a)", "(ip)" on some lemmas.
        words = [w.split("(")[0] for w in words]
        pos = 4 + 2 * n_words
        n_ptrs = int(fields[pos])
        parents = []
        for i in range(n_ptrs):
            symbol, target, target_pos = fields[pos + 1 + 4 * i : pos + 4 + 4 * i]
            if symbol in ("@", "@i") and target_pos == "n":
                parents.append("n" + target)
        out["n" + offset] = (words, parents)
    return out


def build(data_noun: Path, wnids: list[str]) -> dict:
    nouns = read_nouns(data_noun)
    keep: dict[str, tuple[list[str], list[str]]] = {}
    todo = list(wnids)
    while todo:
        wnid = todo.pop()
        if wnid in keep or wnid in TOO_GENERAL:
            continue
        words, parents = nouns[wnid]
        keep[wnid] = (words, [p for p in parents if p not in TOO_GENERAL])
        todo.extend(parents)
    # One readable name per synset, unique: its first lemma, and where two synsets share it (crane the bird and
    # crane the machine) the first lemma of a parent in brackets.
    first: dict[str, list[str]] = {}
    for wnid, (words, _) in keep.items():
        first.setdefault(words[0], []).append(wnid)
    names = {}
    for word, same in first.items():
        for wnid in same:
            parents = keep[wnid][1]
            names[wnid] = word if len(same) == 1 or not parents else f"{word} ({keep[parents[0]][0][0]})"
    taken = Counter(names.values())
    for wnid, name in names.items():  # still shared (same word, parents of the same first word): by wnid
        if taken[name] > 1:
            names[wnid] = f"{name} {wnid}"
    return {
        "source": "Princeton WordNet 3.0 (data.noun, Debian package wordnet-base 1:3.0), ImageNet-1k wnids; "
                  "WordNet 3.0 Copyright 2006 by Princeton University, used under the WordNet 3.0 licence",
        "classes": wnids,
        "synsets": {wnid: {"name": names[wnid], "lemmas": words, "parents": parents}
                    for wnid, (words, parents) in sorted(keep.items())},
    }


if __name__ == "__main__":
    data_noun, wnid_file = Path(sys.argv[1]), Path(sys.argv[2])
    wnids = wnid_file.read_text().split()
    if len(wnids) != 1000 or wnids != sorted(wnids):
        raise SystemExit("expected the 1000 ImageNet-1k wnids in sorted order")
    out = Path(__file__).with_name("imagenet_vocabulary.json")
    out.write_text(json.dumps(build(data_noun, wnids), indent=0, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
