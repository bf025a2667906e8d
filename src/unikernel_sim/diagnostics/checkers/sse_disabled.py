"""SSE/x87 not enabled: #UD or #NM on an SSE or x87 instruction while CR4.OSFXSR
is clear or CR0.EM/TS is set (SDM vol. 3A 13.1.3: what the OS must set)."""
from __future__ import annotations

from unikernel_sim.arch import CR0, CR4, Vector, short_name
from unikernel_sim.diagnostics.checkers import Hint


def check(evidence) -> Hint | None:
    exception = evidence.first_exception
    if exception is None or exception.vector not in (Vector.UD, Vector.NM):
        return None
    vector, rip = exception.vector, exception.rip
    kind = evidence.instruction_kind(rip)
    if kind is None:
        return None
    cr0, cr4 = evidence.state.cr0, evidence.state.cr4
    reasons = []
    if kind == "SSE" and not cr4 & CR4.OSFXSR:
        reasons.append("CR4.OSFXSR is clear")
    if cr0 & CR0.EM:
        reasons.append("CR0.EM is set")
    if vector == Vector.NM and cr0 & CR0.TS:
        reasons.append("CR0.TS is set")
    if not reasons:
        return None
    where = evidence.where(rip)
    name = short_name(vector)
    return Hint("sse-disabled", f"{kind} not enabled: {evidence.instruction_text(rip)} at {where} raised {name} "
                                f"because {' and '.join(reasons)} (set CR0.MP, clear CR0.EM, set "
                                f"CR4.OSFXSR/OSXMMEXCPT before any SSE code)", where)
