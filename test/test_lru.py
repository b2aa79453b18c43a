"""core/lru.py, the one LRU map behind the text-feature caches and the refined-head cache, against a
slow reference (a plain list in recency order) on random operation sequences."""

import threading

import numpy as np
import pytest

from ovs3d_ros.core.lru import LruCache


class ReferenceLru:
    def __init__(self, capacity):
        self.capacity, self.items = max(0, capacity), []  # [(key, value)], least recent first

    def get(self, key):
        for i, (k, v) in enumerate(self.items):
            if k == key:
                self.items.append(self.items.pop(i))
                return v
        return None

    def put(self, key, value):
        self.items = [(k, v) for k, v in self.items if k != key] + [(key, value)]
        self.items = self.items[-self.capacity:] if self.capacity else []


@pytest.mark.parametrize("capacity", [0, 1, 3, 8])
def test_random_operations_match_the_reference(capacity):
    rng = np.random.default_rng(capacity)
    cache, ref = LruCache(capacity), ReferenceLru(capacity)
    for step in range(2000):
        key = int(rng.integers(0, 12))
        if rng.random() < 0.5:
            assert cache.get(key) == ref.get(key), step
        else:
            cache.put(key, step)
            ref.put(key, step)
        assert cache.keys() == [k for k, _ in ref.items] and len(cache) == len(ref.items)


def test_a_hit_protects_an_entry_from_eviction_and_get_or_create_computes_once():
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # 'b' is now the least recent
    cache.put("c", 3)
    assert cache.keys() == ["a", "c"] and cache.get("b") is None
    calls = []
    assert cache.get_or_create("d", lambda: calls.append(1) or 4) == 4
    assert cache.get_or_create("d", lambda: calls.append(1) or 5) == 4 and calls == [1]
    cache.clear()
    assert len(cache) == 0 and cache.get("d") is None


def test_concurrent_puts_and_gets_keep_the_capacity():
    cache, errors = LruCache(5), []

    def worker(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(2000):
                key = int(rng.integers(0, 20))
                cache.put(key, key) if rng.random() < 0.5 else cache.get(key)
                assert len(cache) <= 5
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) == 5 and all(cache.get(k) == k for k in cache.keys())
