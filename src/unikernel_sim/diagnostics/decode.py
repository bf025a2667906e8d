"""Names for the bits of RFLAGS, CR0, CR4, EFER and exception error codes
(Intel SDM vol. 1 3.4.3, vol. 3A 2.5, 2.2.1, 4.7, 6.13); the bits themselves are
defined once in arch.py."""
from __future__ import annotations

from unikernel_sim.arch import (
    IOPL_SHIFT, RFLAGS, SELECTOR_ERROR_VECTORS, PageFaultError, SelectorError, Vector, flag_names,
)


def rflags(value: int) -> list[str]:
    names = [name for name in flag_names(value, RFLAGS) if name != RFLAGS.RESERVED_1.name]
    iopl = (value & RFLAGS.IOPL) >> IOPL_SHIFT
    return names + ([f"IOPL={iopl}"] if iopl else [])


def page_fault_error(code: int) -> str:
    """#PF error code (SDM vol. 3A figure 4-12)."""
    parts = [
        "protection violation" if code & PageFaultError.P else "page not present",
        "write" if code & PageFaultError.W else "read",
        "user mode" if code & PageFaultError.U else "supervisor mode",
    ]
    if code & PageFaultError.RSVD:
        parts.append("reserved bit set")
    if code & PageFaultError.I:
        parts.append("instruction fetch")
    if code & PageFaultError.PK:
        parts.append("protection key")
    return ", ".join(parts)


def selector_error(code: int) -> str:
    """Selector error code (SDM vol. 3A figure 6-6)."""
    if code == 0:
        return "0"
    table = "IDT" if code & SelectorError.IDT else ("LDT" if code & SelectorError.TI else "GDT")
    index = code >> 3
    text = f"{table} entry {index:#x}" + (f" (vector {index:#x})" if table == "IDT" else "")
    return text + (", external event" if code & SelectorError.EXT else "")


def error_code(vector: int, code: int | None) -> str | None:
    if code is None:
        return None
    if vector == Vector.PF:
        return page_fault_error(code)
    if vector in SELECTOR_ERROR_VECTORS:
        return selector_error(code)
    return None
