"""Host breakpoints: stop the run when execution reaches an address.

Each breakpoint is a Unicorn code hook on its one address, so it costs nothing
elsewhere; the translation of that address is dropped so the hook reaches it.
Breakpoints are named by symbol or address and removed the same way.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from unicorn import UC_HOOK_CODE

from unikernel_sim.cpu.vclock import HOOK_ORDER
from unikernel_sim.stops import Stop, StopReason

ADDRESS_MAX = (1 << 64) - 1

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine


class Breakpoints:
    def __init__(self, machine: "Machine") -> None:
        self.machine = machine
        self._hooks: dict[int, int] = {}           # address -> Unicorn hook handle
        self._order: dict[int, int] = {}           # address -> when its hook was added (vclock.HOOK_ORDER)
        self._resume_address: int | None = None    # the breakpoint a run starts on: passed over once
        self._last_hit: int | None = None          # the breakpoint the latest run stopped on

    @property
    def addresses(self) -> list[int]:
        return sorted(self._hooks)

    def resume(self) -> None:
        """A run starts at RIP: if the previous run stopped on the breakpoint there,
        execute its instruction instead of stopping on it again (as a debugger steps over
        the breakpoint it stopped at). A run that merely ended there (a budget, a step, a
        restored snapshot) stops on it. RIP is read only if the last run stopped on a
        breakpoint (every guest call starts a run)."""
        rip = None if self._last_hit is None else self.machine.rip
        self._resume_address = rip if rip in self._hooks and rip == self._last_hit else None
        self._last_hit = None

    def stopped_on(self, address: int | None) -> None:
        """Say the machine now stands on the breakpoint at address as if it had just been
        hit (reverse execution arrives at hits this way), or on none (a restore)."""
        self._last_hit = address

    def add(self, where: str | int) -> int:
        """Stop the run (StopReason.BREAKPOINT) when execution reaches where; returns the address."""
        address = self.machine.symbols.resolve(where)
        if address not in self._hooks:
            uc = self.machine.uc
            self._hooks[address] = uc.hook_add(UC_HOOK_CODE, self._on_hit, begin=address, end=address)
            self._order[address] = next(HOOK_ORDER)
            uc.ctl_remove_cache(address, address + 1)
        return address

    def remove(self, where: str | int) -> None:
        """Remove the breakpoint at a symbol or address (nothing happens if there is none)."""
        address = self.machine.symbols.resolve(where)
        handle = self._hooks.pop(address, None)
        self._order.pop(address, None)
        if handle is not None:
            self.machine.uc.hook_del(handle)
            self.machine.uc.ctl_remove_cache(address, address + 1)

    @contextmanager
    def outside(self, start: int, end: int):
        """While inside the with-block, stop (StopReason.STEP) before the first instruction
        outside [start, end): gdb's range stepping. Two code hooks cover everything but
        the range, so the instructions inside it run translated at full speed; the
        translation cache is dropped on entry (code translated earlier would not call the
        new hooks, Q23) and on exit (code translated meanwhile would keep calling dead ones)."""
        uc, handles = self.machine.uc, []
        order = next(HOOK_ORDER)

        def left(uc, address: int, size: int, _user) -> None:
            if self.machine.loop.inside_stepped_interrupt:
                return                                    # a handler running inside the step
            self.machine.clock.uncount_stopped_instruction(order)
            self.machine.request_stop(Stop(StopReason.STEP, f"stepped out of [{start:#x}, {end:#x})"))

        if start > 0:
            handles.append(uc.hook_add(UC_HOOK_CODE, left, begin=0, end=start - 1))
        if end <= ADDRESS_MAX:
            handles.append(uc.hook_add(UC_HOOK_CODE, left, begin=end, end=ADDRESS_MAX))
        uc.ctl_flush_tb()
        try:
            yield
        finally:
            for handle in handles:
                uc.hook_del(handle)
            uc.ctl_flush_tb()

    def __contains__(self, where: str | int) -> bool:
        return self.machine.symbols.resolve(where) in self._hooks

    def _on_hit(self, uc, address: int, size: int, _user) -> None:
        if address == self._resume_address:
            self._resume_address = None
            return
        self._last_hit = address
        self.machine.clock.uncount_stopped_instruction(self._order[address])
        self.machine.request_stop(Stop(StopReason.BREAKPOINT, f"breakpoint at {self.machine.describe(address)}"))
