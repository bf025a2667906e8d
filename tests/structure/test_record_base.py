"""records.Record must behave as typing.NamedTuple does for the same class body (it
replaced NamedTuple on the boot path to save start-up time): the stdlib's NamedTuple,
built from the very same source text, is the oracle for every answer and every error."""
from __future__ import annotations

import copy
import keyword
import pickle
import sys
import types

import pytest
from hypothesis import given, settings, strategies as st

from unikernel_sim.records import Record

names = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(lambda n: not keyword.iskeyword(n))
values = st.one_of(st.integers(), st.text(max_size=5), st.none(), st.tuples(st.integers()))


def _build(base: str, fields: list[str], defaults: list, module: types.ModuleType):
    """The class `R` from one source text, over NamedTuple or Record."""
    first_default = len(fields) - len(defaults)
    lines = ["from __future__ import annotations", f"class R({base}):", "    '''A record.'''"]
    for index, name in enumerate(fields):
        default = f" = DEFAULTS[{index - first_default}]" if index >= first_default else ""
        lines.append(f"    {name}: int | None{default}")
    lines += ["    def first(self):", "        return self[0] if len(self) else None",
              "    @property", "    def size(self):", "        return len(self)"]
    namespace = module.__dict__
    namespace.update(NamedTuple=__import__("typing").NamedTuple, Record=Record, DEFAULTS=defaults)
    exec("\n".join(lines), namespace)
    return namespace["R"]


def _module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module          # so that pickle finds R by name
    return module


def _outcome(function):
    try:
        return ("value", function())
    except (TypeError, ValueError) as error:
        return (type(error).__name__, str(error))


@settings(max_examples=150, deadline=None)
@given(fields=st.lists(names, min_size=0, max_size=9, unique=True), data=st.data())
def test_a_record_answers_as_the_namedtuple_of_the_same_body(fields, data):
    defaults = data.draw(st.lists(values, max_size=len(fields)))
    oracle = _build("NamedTuple", fields, defaults, _module("record_oracle"))
    ours = _build("Record", fields, defaults, _module("record_ours"))
    given_values = data.draw(st.lists(values, min_size=len(fields), max_size=len(fields)))
    a, b = oracle(*given_values), ours(*given_values)
    assert tuple(a) == tuple(b) and b == a and hash(b) == hash(a)
    assert repr(b) == repr(a)
    assert b._asdict() == a._asdict() and b._fields == a._fields == tuple(fields)
    assert ours._field_defaults == oracle._field_defaults and ours.__match_args__ == oracle.__match_args__
    assert b.first() == a.first() and b.size == a.size and ours.__doc__ == oracle.__doc__
    assert [getattr(b, name) for name in fields] == [getattr(a, name) for name in fields]
    assert pickle.loads(pickle.dumps(b)) == b and type(pickle.loads(pickle.dumps(b))) is ours
    assert copy.copy(b) == b and type(copy.deepcopy(b)) is ours
    assert not hasattr(b, "__dict__")
    # Keywords, defaults, _make, _replace and their errors: the same outcome, message included.
    keywords = dict(zip(fields, given_values))
    assert _outcome(lambda: tuple(ours(**keywords))) == _outcome(lambda: tuple(oracle(**keywords)))
    short = given_values[:data.draw(st.integers(0, len(fields)))]
    assert _outcome(lambda: tuple(ours(*short))) == _outcome(lambda: tuple(oracle(*short)))
    assert _outcome(lambda: ours(*given_values, 1)) == _outcome(lambda: oracle(*given_values, 1))
    assert _outcome(lambda: ours(**keywords, zz_not_a_field=1)) == _outcome(lambda: oracle(**keywords, zz_not_a_field=1))
    assert _outcome(lambda: tuple(ours._make(short))) == _outcome(lambda: tuple(oracle._make(short)))
    change = data.draw(st.dictionaries(st.sampled_from(fields + ["zz_not_a_field"]), values, max_size=3))
    assert _outcome(lambda: tuple(b._replace(**change))) == _outcome(lambda: tuple(a._replace(**change)))
    if fields:                            # a class pattern binds by __match_args__
        match b:
            case ours(first):
                assert first == given_values[0]
            case _:
                pytest.fail("a record did not match its own class pattern")


def test_a_field_that_cannot_be_one_is_refused_as_namedtuple_refuses_it():
    for body in ("    x: int = 1\n    y: int\n", "    _x: int\n"):
        outcomes = []
        for base in ("NamedTuple", "Record"):
            namespace = {"NamedTuple": __import__("typing").NamedTuple, "Record": Record}
            outcomes.append(_outcome(lambda: exec(f"class R({base}):\n{body}", namespace)))
        assert outcomes[0][0] == outcomes[1][0] != "value"
        assert outcomes[1][1] == outcomes[0][1]


def test_a_record_class_is_a_tuple_and_its_own_fields_are_read_only():
    class Point(Record):
        x: int
        y: int = 0

    point = Point(1)
    assert isinstance(point, tuple) and not isinstance(point, Record) and point == (1, 0)
    with pytest.raises(AttributeError):
        point.x = 2
    assert Point.x.__doc__ == "Alias for field number 0"
    assert Point.__new__.__doc__ == "Create new instance of Point(x, y)"
