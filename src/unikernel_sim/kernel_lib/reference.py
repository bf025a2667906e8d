"""Reference semantics for the guest's text output, from Python itself:
str() for decimal, format() for hex, and the % operator (which follows C's
printf for d, i, u, x, X, c, s, %% with flags, width and the l modifier)."""
from __future__ import annotations

import re

_LENGTH = re.compile(r"%([-0]*\d*)(?:ll|l|z)?([diuxXcsp%])")


def put_uint(value: int) -> str:
    return str(value)


def put_int(value: int) -> str:
    return str(value)


def put_hex(value: int, min_digits: int = 1) -> str:
    return "0x" + format(value, f"0{max(min_digits, 1)}x")


def kprintf(format_string: str, *args) -> str:
    """What C printf prints for our subset (kprintf.h), %p as 0x + 16 hex digits."""
    pieces = []
    arguments = list(args)
    position = 0
    for match in _LENGTH.finditer(format_string):
        pieces.append(format_string[position:match.start()])
        flags_width, conversion = match.groups()
        position = match.end()
        if conversion == "%":
            pieces.append("%")
            continue
        value = arguments.pop(0)
        if conversion == "p":
            pieces.append(("%" + flags_width + "s") % ("0x" + format(value, "016x")))
        elif conversion == "c":
            pieces.append(("%" + flags_width + "c") % chr(value))
        else:
            pieces.append(("%" + flags_width + conversion) % value)
    pieces.append(format_string[position:])
    return "".join(pieces)
