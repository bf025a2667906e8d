"""Typed calls into the reference firmware's kernel_lib.

Pointers are plain ints; NULL comes back as None. Output functions return the
text they wrote to COM1 during the call."""
from __future__ import annotations

from typing import TYPE_CHECKING

from unikernel_sim.kernel_lib.heap import HeapInspector, HeapStats
from unikernel_sim.kernel_lib.scratch import GuestScratch

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine


def _pointer(value: int) -> int | None:
    return value or None


def malloc(m: "Machine", size: int) -> int | None:
    return _pointer(m.call("malloc", size))


def calloc(m: "Machine", count: int, size: int) -> int | None:
    return _pointer(m.call("calloc", count, size))


def realloc(m: "Machine", pointer: int | None, size: int) -> int | None:
    return _pointer(m.call("realloc", pointer or 0, size))


def free(m: "Machine", pointer: int | None) -> None:
    m.call("free", pointer or 0)


def heap_stats(m: "Machine") -> HeapStats:
    return HeapInspector(m).stats()


def _serial_during(m: "Machine", function: str, *args) -> str:
    before = len(m.serial.data)
    m.call(function, *args)
    return bytes(m.serial.data[before:]).decode("utf-8", errors="replace")


def serial_put_uint(m: "Machine", value: int) -> str:
    return _serial_during(m, "serial_put_uint", value)


def serial_put_int(m: "Machine", value: int) -> str:
    return _serial_during(m, "serial_put_int", value)


def serial_put_hex(m: "Machine", value: int, min_digits: int = 1) -> str:
    return _serial_during(m, "serial_put_hex", value, min_digits)


def kprintf(m: "Machine", scratch: GuestScratch, format: str, *args: int | str) -> str:
    """kprintf(format, args...) in the guest; str arguments are placed in scratch."""
    guest_args = [scratch.put_c_string(a) if isinstance(a, str) else a for a in args]
    return _serial_during(m, "kprintf", scratch.put_c_string(format), *guest_args)
