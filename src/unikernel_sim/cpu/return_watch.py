"""Notice when an interrupt handler has returned to the code it interrupted.

A debugger's step is atomic with respect to interrupts, as the trap flag makes it on
hardware (SDM Vol. 3, debug chapter, "Single-Step Exception Condition": the processor
clears TF on entry to a handler, and IRET restores it): an IRQ that arrives during a step runs its whole handler, and the step
ends one instruction after the return. The run loop learns of the return through one
code hook on the interrupted RIP that fires only when RSP is back at its value before
delivery (the same RIP reached deeper in the handler, e.g. by recursion, is not the
return). IRET(Q) restores RSP exactly in both modes, so the comparison is exact.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_CODE
from unicorn.x86_const import UC_X86_REG_RSP

from unikernel_sim.cpu.vclock import HOOK_ORDER

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine


class ReturnWatch:
    def __init__(self, machine: "Machine", rip: int, rsp: int, on_return: Callable[[], None]) -> None:
        self.machine = machine
        self.rip = rip
        self.rsp = rsp
        self._on_return = on_return
        self._order = next(HOOK_ORDER)
        self._handle: int | None = machine.uc.hook_add(UC_HOOK_CODE, self._on_code, begin=rip, end=rip)
        machine.uc.ctl_remove_cache(rip, rip + 1)         # code translated before would not call the hook

    def _on_code(self, uc, address: int, size: int, _user) -> None:
        if uc.reg_read(UC_X86_REG_RSP) != self.rsp:
            return
        # the hook runs before the instruction, which the run loop stops in front of:
        # if the counting hook came first it has counted it already
        self.machine.clock.uncount_stopped_instruction(self._order)
        self.remove(inside_hook=True)
        self._on_return()

    def remove(self, *, inside_hook: bool = False) -> None:
        """Drop the hook. Inside the hook itself the translated block is left alone (it
        is executing; its call to the deleted hook does nothing)."""
        if self._handle is not None:
            self.machine.uc.hook_del(self._handle)
            if not inside_hook:
                self.machine.uc.ctl_remove_cache(self.rip, self.rip + 1)
            self._handle = None
