"""The device-state load's two C loops (devices/_state_load.c) against what they
replace, Python's own dict.update and `!=` plus a copy by the saved container's type."""
from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, strategies as st

from unikernel_sim.devices._state_load import links_hold, load_containers, load_plain
from unikernel_sim.devices.device import LoadPlan, Stateful

names = st.sampled_from(["mode", "count", "latch", "status", "irr", "imr"])
plain_values = st.one_of(st.integers(), st.booleans(), st.none(), st.binary(max_size=3))   # no st.text: its
# first use builds Unicode tables (~1 s), which tripped Hypothesis's too_slow health check on a busy host
dicts = st.dictionaries(names, plain_values, max_size=6)


@given(st.lists(st.tuples(dicts, dicts), max_size=5), st.data())
def test_load_plain_is_dict_update_in_order(pairs, data):
    for values, saved in pairs:                    # some values already the saved objects
        for name in data.draw(st.lists(st.sampled_from(sorted(saved) or ["-"]), max_size=3)):
            if name in saved:
                values[name] = saved[name]
    put = [any(name not in values or values[name] is not value for name, value in saved.items())
           for values, saved in pairs]
    expected = [(dict(values), saved) for values, saved in pairs]
    for values, saved in expected:
        values.update(saved)
    flags = load_plain(pairs)
    assert [values for values, _ in pairs] == [values for values, _ in expected]
    assert list(flags) == [int(flag) for flag in put]


containers = st.one_of(st.lists(st.integers(0, 255), max_size=4),
                       st.binary(max_size=4).map(bytearray),
                       st.lists(st.integers(0, 255), max_size=4).map(deque))


@given(st.lists(st.tuples(containers, containers), max_size=5))
def test_load_containers_copies_only_what_differs(cases):
    triples, before = [], []
    for current, saved in cases:
        if type(current) is not type(saved):
            current = type(saved)(current)
        values = {"field": current}
        triples.append((values, "field", saved))
        before.append(current)
    flags = load_containers(triples)
    assert list(flags) == [int(current != saved) for current, saved in zip(before, [t[2] for t in triples])]
    for (values, _, saved), current in zip(triples, before):
        assert values["field"] == saved
        assert type(values["field"]) is type(saved)
        assert values["field"] is not saved                  # the snapshot keeps its own copy
        assert (values["field"] is current) == (current == saved)   # equal ones are left alone


def test_the_loops_refuse_what_is_not_their_shape():
    with pytest.raises(TypeError, match="list"):
        load_plain(({}, {}))
    with pytest.raises(TypeError, match="item 0"):
        load_plain([({}, {}, {})])
    with pytest.raises(TypeError, match="item 1"):
        load_containers([({"a": []}, "a", []), ({}, "a")])
    with pytest.raises(KeyError):
        load_containers([({}, "missing", [])])


class Leaf(Stateful):
    saved_fields = ("level",)

    def __init__(self) -> None:
        self.level = 1


class Publisher(Stateful):
    """A device whose after_load tells a C path what its state means."""
    saved_fields = ("mode", "fifo", "leaf")

    def __init__(self) -> None:
        self.mode = 3
        self.fifo = deque([1, 2])
        self.leaf = Leaf()
        self.published = 0

    def after_load(self) -> None:
        self.published += 1


@pytest.mark.parametrize("change, republished", [
    (lambda p: None, 0),
    (lambda p: setattr(p, "mode", 4), 1),
    (lambda p: p.fifo.append(3), 1),
    (lambda p: setattr(p.leaf, "level", 0), 1),                # a nested object's field
])
def test_after_load_runs_when_anything_in_its_subtree_was_put_back(change, republished):
    device = Publisher()
    state = device.save_state()
    plan = LoadPlan([device], [state])
    assert plan.apply()
    device.published = 0
    change(device)
    assert plan.apply()
    assert device.published == republished
    assert device.save_state() == state


def test_links_hold_only_while_every_nested_object_is_the_one_recorded():
    child, items = Leaf(), [Leaf(), Leaf()]
    owner = {"leaf": child, "items": items}
    links = [(owner, "leaf", None, child), (owner, "items", 1, items[1])]
    assert links_hold(links) is True
    assert links_hold([(owner, "leaf", None, Leaf())]) is False          # replaced
    assert links_hold([(owner, "gone", None, child)]) is False            # no such field
    assert links_hold([(owner, "items", 2, items[1])]) is False           # the list got shorter
    assert links_hold([(owner, "leaf", 0, child)]) is False               # not a list any more
    with pytest.raises(TypeError, match="item 0"):
        links_hold([(owner, "leaf", None)])
