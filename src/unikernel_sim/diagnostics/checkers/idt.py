"""Missing or short IDT: an exception was raised while IDTR's limit is 0 or too
small to hold the vector's gate."""
from __future__ import annotations

from unikernel_sim.arch import short_name
from unikernel_sim.diagnostics.checkers import Hint


def check(evidence) -> Hint | None:
    chain = evidence.stop.chain
    if not chain:
        return None
    first = chain[0]
    base, limit = evidence.state.idtr
    gate = 16 if evidence.state.long_mode else 8
    if first.vector * gate + gate - 1 <= limit:
        return None
    if limit == 0:
        return Hint("missing-idt", f"missing IDT: {short_name(first.vector)} at {first.where} could not be "
                                   "delivered because IDTR's limit is 0 (no lidt before the first exception)",
                    first.where)
    return Hint("short-idt", f"short IDT: {short_name(first.vector)} at {first.where} needs gate "
                             f"{first.vector} but IDTR's limit {limit:#x} holds only {(limit + 1) // gate} gates",
                first.where)
