"""Stack overflow: RSP (or the faulting address, when it is just below RSP) has
left the kernel's stack, known from its symbols (boot_stack_bottom/top)."""
from __future__ import annotations

from unikernel_sim.diagnostics.checkers import Hint

STACK_SYMBOLS = (("boot_stack_bottom", "boot_stack_top"), ("stack_bottom", "stack_top"))
NEAR = 4096


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
    if bottom <= rsp <= top and not (fault and bottom - NEAR <= fault[0] < bottom):
        return None
    if rsp > top + NEAR or rsp < bottom - (1 << 20):
        return None            # RSP is somewhere else entirely (another stack): no evidence
    below = bottom - min(rsp, fault[0] if fault else rsp)
    where = evidence.where(evidence.fault_rip or evidence.registers["rip"])
    return Hint("stack-overflow",
                f"stack overflow: RSP {rsp:#x} is {below} bytes below {bottom_name} ({bottom:#x}); "
                f"the stack is {top - bottom} bytes", where)
