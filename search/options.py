"""How a process opens its vector stores (`StoreOptions`): the same for every store it opens, built once from the
settings by the entry point (ui/services/context.py `Context.store_options`)."""

from __future__ import annotations

from dataclasses import dataclass

from imgsearch.search.qdrant_config import ServerCollectionConfig


@dataclass(frozen=True)
class StoreOptions:
    """`search/factory.py` `open_index` and `search/stores.py` `open_stores` read these; the defaults are theirs.

    qdrant_url: None -> embedded Qdrant Edge under the data dir; ":memory:" -> qdrant-client in memory (tests); any
    other URL -> that Qdrant server (with `api_key`). `lock_timeout_s` bounds the wait for the embedded stores'
    lock; `role` names this process ("ingest", "worker", "app") in the StoreBusyError other processes get.
    `faiss_index`: the FAISS mirror's index type (search/faiss_ann.py: `auto` or a FAISS factory string).
    `qdrant_config`: the collection's settings, server or Edge (None = the defaults). `edge_owner`: reach Qdrant
    Edge through one process that keeps it loaded (always / never / auto by size; search/edge_owner.py), which
    stops after `edge_owner_idle_s` without a request. `light` (open_stores only), for commands that read and
    remove: an existing store needs only stores.LIGHT_MARGIN_BYTES free, and each write checks its room.
    """

    qdrant_url: str | None = None
    api_key: str | None = None
    lock_timeout_s: float = 30.0
    role: str | None = None
    faiss_index: str = "auto"
    qdrant_config: ServerCollectionConfig | None = None
    edge_owner: str = "never"
    edge_owner_idle_s: float = 900.0
    light: bool = False


DEFAULTS = StoreOptions()
