"""One small thread-safe least-recently-used map, for the caches that hold tensors or modules keyed
by a vocabulary (text embeddings, refined query heads). ``functools.lru_cache`` does not fit: these
caches belong to an object, are cleared on demand, and their keys are not always the call's
arguments."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most ``capacity`` entries (0 keeps nothing); a hit makes an entry the most recent, a put
    beyond capacity evicts the least recent."""

    def __init__(self, capacity: int):
        self.capacity = max(0, int(capacity))
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get_or_create(self, key: K, create: Callable[[], V]) -> V:
        """The cached value, else ``create()``'s (computed outside the lock, then stored)."""
        value = self.get(key)
        if value is None:
            value = create()
            self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def keys(self) -> list[K]:
        """Least recent first."""
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
