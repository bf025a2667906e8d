"""The boot path's records, defined cheaply: start-up is a measured goal.

Mutable records (Stop, Walk, the Multiboot headers...) are plain classes with their
own __init__ rather than dataclasses: importing `dataclasses` (it imports inspect,
ast, dis and tokenize) and generating each definition's methods from source cost
every start-up ~15 ms for the 23 records a boot defines (docs/performance.md,
start-up). record_repr and record_equal give them a dataclass's repr and equality,
and a Record a repr without a field that says nothing (a machine, a whole image).

Immutable records derive from Record (below): typing.NamedTuple's behaviour at a
quarter of its definition cost."""
from __future__ import annotations


def record_repr(record: object, hidden: tuple[str, ...] = ()) -> str:
    """Class(field=value, ...) over a NamedTuple's fields or the attributes __init__ set,
    in their order; names in hidden (a machine, a whole image) and private ones are left out."""
    items = record._asdict().items() if hasattr(record, "_asdict") else vars(record).items()
    fields = ", ".join(f"{name}={value!r}" for name, value in items if not name.startswith("_") and name not in hidden)
    return f"{type(record).__qualname__}({fields})"


def record_equal(record: object, other: object) -> bool:
    """Equal when of the same class with equal attributes (NotImplemented otherwise,
    as a dataclass's __eq__)."""
    if type(other) is not type(record):
        return NotImplemented
    return vars(record) == vars(other)


# --- Record: typing.NamedTuple's immutable records, defined at a quarter of the cost ---------

try:
    from _collections import _tuplegetter          # what collections.namedtuple uses for its fields
except ImportError:                                 # pragma: no cover - another interpreter
    from operator import itemgetter as _itemgetter

    def _tuplegetter(index: int, doc: str) -> property:
        return property(_itemgetter(index), doc=doc)

_tuple_new = tuple.__new__
_new_templates: dict[int, object] = {}              # arity -> a __new__ with placeholder names


def _new_function(name: str, fields: tuple[str, ...], defaults: tuple):
    """A __new__(cls, field, ...) for these fields: the template of this arity, compiled
    once per process, with its parameters renamed (so keywords bind by field name).
    collections.namedtuple compiles a source string for every class instead: ~33 us
    of the saving measured in docs/performance.md."""
    template = _new_templates.get(len(fields))
    if template is None:
        parameters = ", ".join(f"_{index}" for index in range(len(fields)))
        namespace = {"_tuple_new": _tuple_new}
        exec(f"def __new__(_cls, {parameters}):\n    return _tuple_new(_cls, ({parameters}{',' if fields else ''}))", namespace)
        template = _new_templates[len(fields)] = namespace["__new__"]
    renamed = {"co_varnames": ("_cls",) + fields}
    if hasattr(template.__code__, "co_qualname"):   # Python 3.11+: named so in error messages
        renamed["co_qualname"] = f"{name}.__new__"
    function = type(template)(template.__code__.replace(**renamed), template.__globals__, "__new__",
                              defaults or None)
    function.__qualname__ = f"{name}.__new__"
    function.__doc__ = f"Create new instance of {name}({', '.join(fields)})"
    return function


class _RecordMethods(tuple):
    """The methods every Record shares with a NamedTuple (the same names and results)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    @classmethod
    def _make(cls, iterable):
        result = _tuple_new(cls, iterable)
        if len(result) != len(cls._fields):
            raise TypeError(f"Expected {len(cls._fields)} arguments, got {len(result)}")
        return result

    def _replace(self, /, **changes):
        result = self._make(map(changes.pop, self._fields, self))
        if changes:
            raise ValueError(f"Got unexpected field names: {list(changes)!r}")
        return result

    def _asdict(self) -> dict:
        return dict(zip(self._fields, self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{name}={value!r}' for name, value in zip(self._fields, self))})"

    def __getnewargs__(self) -> tuple:
        return tuple(self)


class _RecordMeta(type):
    """Builds each Record subclass as a tuple subclass with NamedTuple's layout."""

    def __new__(mcls, name: str, bases: tuple, namespace: dict):
        if not bases:
            return super().__new__(mcls, name, bases, namespace)
        fields = tuple(namespace.get("__annotations__", ()))
        defaults, default_names = [], []
        for field in fields:
            if field.startswith("_"):
                raise ValueError(f"Field names cannot start with an underscore: {field!r}")
            if field in namespace:
                defaults.append(namespace.pop(field))
                default_names.append(field)
            elif defaults:
                raise TypeError(f"Non-default namedtuple field {field} cannot follow default field"
                                f"{'s' if len(defaults) > 1 else ''} {', '.join(default_names)}")
        body = {"__slots__": (), "_fields": fields, "__match_args__": fields,
                "_field_defaults": dict(zip(fields[len(fields) - len(defaults):], defaults)),
                "__new__": _new_function(name, fields, tuple(defaults))}
        for index, field in enumerate(fields):
            body[field] = _tuplegetter(index, f"Alias for field number {index}")
        body.update(namespace)
        return type.__new__(type, name, (_RecordMethods,), body)


class Record(metaclass=_RecordMeta):
    """Base of an immutable record, written as a typing.NamedTuple is:

        class Site(Record):
            address: int
            text: str = ""

    and behaving as one (a tuple with named fields, defaults, _make, _replace, _asdict,
    the same repr, pickling and pattern matching). Why not NamedTuple itself: typing
    turns every string annotation into a ForwardRef, compiling it, and namedtuple then
    compiles a __new__ from source, ~135 us a class; the boot path's 40 records cost
    ~6 ms of every start-up that way and ~1.5 ms this way (docs/performance.md).
    A Record class is a plain tuple subclass: ``isinstance(x, Record)`` is False, as
    ``isinstance(x, NamedTuple)`` is."""
