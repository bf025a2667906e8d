"""Values made once for a particular object and found again by its identity.

A snapshot is restored thousands of times, and each restore needs things derived from
the snapshot's parts: the devices' flattened load plan (devices/board.py), the clock's
parsed counters (cpu/vclock.py), the C request of the memory and code restore
(cpu/code_cache.py). Those parts are lists, bytes and contexts: not all hashable, and
equal ones may still be different snapshots, so the key is the object itself."""
from __future__ import annotations

from typing import Any


class IdentityCache:
    """At most `limit` values, each for one object; the oldest is dropped first. An
    entry keeps its object alive, so no other object can take its id while cached."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: dict[int, tuple[object, Any]] = {}     # id(obj) -> (obj, value)

    def get(self, obj: object) -> Any:
        """The value kept for obj, or None."""
        entry = self._entries.get(id(obj))
        return None if entry is None else entry[1]

    def keep(self, obj: object, value: Any) -> Any:
        """Keep value for obj (dropping the oldest entry when full); returns value."""
        if id(obj) not in self._entries and len(self._entries) >= self.limit:
            del self._entries[next(iter(self._entries))]
        self._entries[id(obj)] = (obj, value)
        return value

    def drop(self, obj: object) -> None:
        self._entries.pop(id(obj), None)

    def __len__(self) -> int:
        return len(self._entries)
