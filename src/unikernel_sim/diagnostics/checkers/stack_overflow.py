"""Stack overflow: RSP (or the faulting address, when it is just below RSP) has
left the kernel's stack, known from its symbols (boot_stack_bottom/top)."""
from __future__ import annotations

from unikernel_sim.diagnostics.checkers import Hint

STACK_SYMBOLS = (("boot_stack_bottom", "boot_stack_top"), ("stack_bottom", "stack_top"))
NEAR = 4096
MAX_OVERFLOW = 1 << 40    # further "below" than this is another stack, not an overflow


def check(evidence) -> Hint | None:
    symbols = evidence.machine.symbols
    if symbols is None:
        return None
    for bottom_name, top_name in STACK_SYMBOLS:
        bottom, top = symbols.address_of(bottom_name), symbols.address_of(top_name)
        if bottom is not None and top is not None:
            break
    else:
        return None
    rsp = evidence.registers["rsp"]
    fault = evidence.page_fault
    lowest = rsp
    if fault and 0 < (bottom - fault[0]) % (1 << 64) <= NEAR:
        lowest = fault[0]                                # the push below the bottom that faulted
    below = (bottom - lowest) % (1 << 64)               # wraps when RSP went below zero
    if below == 0 or below > MAX_OVERFLOW:
        return None            # on the stack, or somewhere else entirely (another stack): no evidence
    where = evidence.where(evidence.fault_rip or evidence.registers["rip"])
    return Hint("stack-overflow",
                f"stack overflow: RSP {rsp:#x} is {below} bytes below {bottom_name} ({bottom:#x}); "
                f"the stack is {top - bottom} bytes", where)
