"""What to call a cluster: its main label and that label's share, "mixed" with the shares when no label has a
majority, or its most frequent automatic tags when its members have no labels."""

from __future__ import annotations

from collections.abc import Callable, Mapping

# A cluster is named after one label only when that label is more than half of its members: it then outnumbers
# every other label and the unlabelled members together, so the name is true of most images picked from it. Below
# that a single label misleads (a cluster that is 14% gramophones is not a gramophone cluster), so it reads as
# mixed, with the shares of its most common labels.
MAJORITY = 0.5


def percent(share: float) -> str:
    """"94%", "<1%" for a share that rounds to 0, "99%" for one that rounds up to 100 but is not everything."""
    if 0 < share < 0.005:
        return "<1%"
    if share < 1 and round(share * 100) >= 100:
        return "99%"
    return f"{share:.0%}"


def cluster_title(row: Mapping, show: Callable[[str], str] = str) -> str | None:
    """What to call a `db.collection.cluster_summary` row, `show` writing each label (the app's display names).

    Shares are of all the cluster's members, unlabelled ones included, so they never overstate a label:
    "Leopards 94%" when one label is more than half of them; "mixed: gramophone 14%, metronome 11%, cup 9%, …"
    otherwise ("…": more labels follow), ending with the unlabelled share when some members have no label;
    "tagged tabby, tiger cat" (its most frequent automatic tags) when no member has a label; None with neither
    (the caller numbers it)."""
    size = row.get("size") or 0
    top = row.get("top_labels") or []
    if size and top:
        shares = [(label, count / size) for label, count in top]
        label, share = shares[0]
        if share > MAJORITY:
            return f"{show(label)} {percent(share)}"
        parts = [f"{show(label)} {percent(share)}" for label, share in shares]
        if (row.get("n_labels") or 0) > len(shares):
            parts.append("…")
        unlabelled = size - (row.get("labelled") or 0)
        if unlabelled > 0:
            parts.append(f"{percent(unlabelled / size)} unlabelled")
        return "mixed: " + ", ".join(parts)
    tags = list(row.get("top_tags") or [])
    return f"tagged {', '.join(tags)}" if tags else None
