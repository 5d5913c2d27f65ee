"""A tqdm bar that also reports each advance, so callers other than a terminal see progress per batch."""

from __future__ import annotations

from collections.abc import Callable

from tqdm import tqdm


class ReportingBar(tqdm):
    """tqdm that calls `on_advance(total advanced so far)` on every update, drawn or not (`disable`).

    The embedder advances the bar once per forward batch (a few images): reporting there, rather than once per
    store batch of hundreds, is what lets the app show images/s and an ETA that move.
    """

    def __init__(self, *args, on_advance: Callable[[int], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_advance = on_advance
        self.advanced = 0

    def update(self, n: float | None = 1):
        out = super().update(n)
        if n:
            self.advanced += int(n)
            if self.on_advance is not None:
                self.on_advance(self.advanced)
        return out
