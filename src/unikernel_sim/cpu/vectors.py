"""Exception vectors (Intel SDM vol. 3A, table 6-1)."""
from __future__ import annotations

# vector: (mnemonic, description, has error code, class)
EXCEPTIONS: dict[int, tuple[str, str, bool, str]] = {
    0: ("#DE", "divide error", False, "fault"),
    1: ("#DB", "debug", False, "fault/trap"),
    2: ("NMI", "non-maskable interrupt", False, "interrupt"),
    3: ("#BP", "breakpoint", False, "trap"),
    4: ("#OF", "overflow", False, "trap"),
    5: ("#BR", "BOUND range exceeded", False, "fault"),
    6: ("#UD", "invalid opcode", False, "fault"),
    7: ("#NM", "device not available", False, "fault"),
    8: ("#DF", "double fault", True, "abort"),
    9: ("CSO", "coprocessor segment overrun", False, "fault"),
    10: ("#TS", "invalid TSS", True, "fault"),
    11: ("#NP", "segment not present", True, "fault"),
    12: ("#SS", "stack-segment fault", True, "fault"),
    13: ("#GP", "general protection", True, "fault"),
    14: ("#PF", "page fault", True, "fault"),
    16: ("#MF", "x87 floating-point error", False, "fault"),
    17: ("#AC", "alignment check", True, "fault"),
    18: ("#MC", "machine check", False, "abort"),
    19: ("#XM", "SIMD floating-point exception", False, "fault"),
    20: ("#VE", "virtualization exception", False, "fault"),
    21: ("#CP", "control protection", True, "fault"),
}

CONTRIBUTORY = frozenset({0, 10, 11, 12, 13})
"""SDM vol. 3A, table 6-4: contributory exceptions (#PF is its own class)."""


def vector_name(vector: int) -> str:
    """``#PF (page fault)`` for exceptions, ``vector 0x30`` otherwise."""
    if vector in EXCEPTIONS:
        mnemonic, description, _, _ = EXCEPTIONS[vector]
        return f"{mnemonic} ({description})"
    return f"vector {vector:#x}"


def short_name(vector: int) -> str:
    return EXCEPTIONS[vector][0] if vector in EXCEPTIONS else f"INT {vector:#x}"


def has_error_code(vector: int) -> bool:
    return vector in EXCEPTIONS and EXCEPTIONS[vector][2]
