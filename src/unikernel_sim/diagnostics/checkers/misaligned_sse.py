"""Misaligned SSE: an instruction that requires a 16-byte-aligned memory operand
(movaps, movdqa, legacy-SSE arithmetic on m128) used a misaligned address.
Unicorn does not fault where hardware raises #GP(0); with --strict-alignment the
machine raises it, and without it the report warns about the instruction it
stopped at (see alignment.py for the watch)."""
from __future__ import annotations

from unikernel_sim.diagnostics.checkers import Hint


def check(evidence) -> Hint | None:
    seen = evidence.machine.alignment_violations
    if seen:
        address, operand, text = seen[0]
        where = evidence.where(address)
        more = f" (and {len(seen) - 1} more)" if len(seen) > 1 else ""
        return Hint("misaligned-sse", f"misaligned SSE: {text} at {where} used {operand:#x}, not 16-byte "
                                      f"aligned: real hardware raises #GP(0){more}", where)
    rip = evidence.registers["rip"]
    operand = evidence.aligned_operand(rip)
    if operand is None or operand % 16 == 0:
        return None
    where = evidence.where(rip)
    return Hint("misaligned-sse", f"misaligned SSE: {evidence.instruction_text(rip)} at {where} uses {operand:#x}, "
                                  "not 16-byte aligned: real hardware raises #GP(0) here", where)
