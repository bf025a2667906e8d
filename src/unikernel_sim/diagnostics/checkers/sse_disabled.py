"""SSE/x87 not enabled: #UD or #NM on an SSE or x87 instruction while CR4.OSFXSR
is clear or CR0.EM/TS is set (SDM vol. 3A 13.1.3: what the OS must set)."""
from __future__ import annotations

from unikernel_sim.diagnostics.checkers import Hint

CR0_EM, CR0_TS = 1 << 2, 1 << 3
CR4_OSFXSR = 1 << 9
VECTOR_UD, VECTOR_NM = 6, 7


def check(evidence) -> Hint | None:
    exception = evidence.first_exception
    if exception is None or exception[0] not in (VECTOR_UD, VECTOR_NM):
        return None
    vector, rip = exception[0], exception[2]
    kind = evidence.instruction_kind(rip)
    if kind is None:
        return None
    cr0, cr4 = evidence.state.cr0, evidence.state.cr4
    reasons = []
    if kind == "SSE" and not cr4 & CR4_OSFXSR:
        reasons.append("CR4.OSFXSR is clear")
    if cr0 & CR0_EM:
        reasons.append("CR0.EM is set")
    if vector == VECTOR_NM and cr0 & CR0_TS:
        reasons.append("CR0.TS is set")
    if not reasons:
        return None
    where = evidence.where(rip)
    name = "#UD" if vector == VECTOR_UD else "#NM"
    return Hint("sse-disabled", f"{kind} not enabled: {evidence.instruction_text(rip)} at {where} raised {name} "
                                f"because {' and '.join(reasons)} (set CR0.MP, clear CR0.EM, set "
                                f"CR4.OSFXSR/OSXMMEXCPT before any SSE code)", where)
