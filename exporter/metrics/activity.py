"""The activity counters of the event store as parts of /metrics, one section per family.

A root login re-renders the login families, not every account's API-call counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

from exporter.activity.store import FAMILIES, TIME_DEPENDENT_FAMILIES, EventStore
from exporter.engine.state import Section


def _family_key(store: EventStore, name: str) -> Callable[[], Hashable]:
    if name in TIME_DEPENDENT_FAMILIES:
        # The trailing 90-day count and the quarterly counts move with time alone.
        return lambda: (store.family_version(name), int(time.time() // 60))
    return partial(store.family_version, name)


def _one_family(store: EventStore, name: str) -> list[Any]:
    return [store.family(name)]


def activity_sections(store: EventStore) -> list[Section]:
    return [Section(f"activity:{name}", _family_key(store, name), partial(_one_family, store, name)) for name in FAMILIES]
