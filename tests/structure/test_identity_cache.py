"""identity_cache.IdentityCache: values found by the object's identity, not equality,
the oldest dropped first."""
from __future__ import annotations

from unikernel_sim.identity_cache import IdentityCache


def test_values_are_found_by_identity_and_the_oldest_goes_first():
    cache = IdentityCache(2)
    first, equal_twin, second, third = [1, 2], [1, 2], b"x", (3,)
    assert cache.keep(first, "a") == "a"
    assert cache.get(first) == "a" and cache.get(equal_twin) is None       # equal is not the same
    cache.keep(second, "b")
    cache.keep(first, "a2")                                                   # replacing takes no room
    assert len(cache) == 2
    cache.keep(third, "c")                                                    # full: `first` was kept first
    assert (cache.get(first), cache.get(second), cache.get(third)) == (None, "b", "c")
    cache.drop(second)
    cache.drop(second)
    assert cache.get(second) is None and len(cache) == 1


def test_an_entry_keeps_its_object_alive_so_its_id_is_not_reused():
    cache = IdentityCache(4)
    cache.keep([0] * 3, "value")
    assert cache.get([0] * 3) is None                 # a new list, never the cached one
