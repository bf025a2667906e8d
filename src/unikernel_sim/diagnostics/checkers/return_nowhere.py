"""Return into nowhere: execution arrived outside every executable segment right
after a `ret` popped that address (stack corruption), naming the function
that returned (the last `ret` the machine saw, recorded by a C hook)."""
from __future__ import annotations

from unikernel_sim.diagnostics.checkers import Hint


def check(evidence) -> Hint | None:
    rip = evidence.fault_rip if evidence.fault_rip is not None else evidence.registers["rip"]
    if evidence.is_code(rip):
        return None
    popped_at = evidence.registers["rsp"] - 8
    exception = evidence.exception
    popped = exception.word_below_rsp if exception is not None else evidence.u64(popped_at)
    if popped != rip:
        return None
    returning = exception.last_return if exception is not None else evidence.machine.clock.last_return()
    who = f"{evidence.function_at(returning) or evidence.where(returning)} returned" if returning else "a ret jumped"
    advice = "" if returning else " (boot with --check-returns to name the function that returned)"
    return Hint("return-into-nowhere",
                f"return into nowhere: {who} to {rip:#x}, outside every executable segment; the return "
                f"address at {popped_at:#x} was overwritten (stack corruption){advice}",
                evidence.where(returning) if returning else None)
