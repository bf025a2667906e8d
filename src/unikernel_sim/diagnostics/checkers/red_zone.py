"""Red zone: an interrupt frame was pushed into the 128 bytes below the
interrupted RSP, and the interrupted code later read bytes the push had
overwritten - a kernel built without -mno-red-zone (the watch that gathers
this evidence is in cpu/red_zone_watch.py)."""
from __future__ import annotations

from unikernel_sim.diagnostics.checkers import Hint


def check(evidence) -> Hint | None:
    hits = evidence.machine.red_zone.hits if evidence.machine.red_zone else []
    if not hits:
        return None
    first = hits[0]
    offsets = sorted({offset for hit in hits if hit.function == first.function for offset in hit.offsets})
    span = f"RSP{min(offsets):+#x}..RSP{max(offsets):+#x}" if offsets else "RSP-?"
    return Hint("red-zone",
                f"red zone: {first.function} read bytes at {span} that an interrupt "
                f"frame had overwritten ({len(hits)} time(s)): build with -mno-red-zone", first.where)
