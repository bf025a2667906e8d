"""repr and == for the boot path's mutable records (Stop, Walk, the Multiboot headers...).

They are plain classes with their own __init__ rather than dataclasses: importing
`dataclasses` (it imports inspect, ast, dis and tokenize) and generating each
definition's methods from source cost every start-up ~15 ms for the 23 records a
boot defines (docs/performance.md, start-up). Their immutable records are NamedTuples.
These two functions give the plain classes a dataclass's repr and equality, and a
NamedTuple a repr without a field that says nothing (a machine, a whole image)."""
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
