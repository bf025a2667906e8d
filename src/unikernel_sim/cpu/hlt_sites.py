"""The hlt instructions a guest idles at, woken by the timer in C.

A kernel idles with `sti; hlt` until its timer ticks. Through the run loop every such
hlt left emu_start: Python jumped virtual time to the next event, brought the devices up
to date, delivered the tick and started the next slice, ~100 us of host time an
interrupt (`bench/irq_cost.py --idle`). The first time the run loop serves a hlt with
IF set, it learns the hlt's address; a C code hook there (`vclock_hlt`) then does the
same when the next event is a tick C owns (`tick_path_wake_from_hlt` in _tick_path.c),
and lets the hlt run - back to the run loop - for everything else: another device's event
first, halted with IF clear, code rewritten since, a debugger's step or breakpoint.

A code hook is translated into the block that holds its address, so learning a site
drops that address's translations; sites are few (an idle loop or two), so they are
kept for the machine's life.
"""
from __future__ import annotations

from collections.abc import Collection

from unicorn import Uc

from unikernel_sim.cpu.unicorn_compat import delete_native_hook
from unikernel_sim.cpu.vclock import VirtualClock

MAX_SITES = 16
"""Sites beyond these stay the run loop's (a guest that halts at many places is not idle
in one loop, and every site costs a hook call each time its block runs)."""


class HltSites:
    def __init__(self, clock: VirtualClock, uc: Uc) -> None:
        self.clock = clock
        self.uc = uc
        self._hooks: dict[int, int | None] = {}    # address -> hook handle; None: off (a breakpoint)
        self.enabled = True                          # False: every hlt is the run loop's (the reference)

    @property
    def addresses(self) -> list[int]:
        return sorted(self._hooks)

    def __len__(self) -> int:
        """Sites learnt (a run with none has nothing to square with its breakpoints)."""
        return len(self._hooks)

    def learn(self, address: int) -> None:
        """The run loop served the hlt at address (IF set): wake it in C from now on."""
        if self.enabled and address not in self._hooks and len(self._hooks) < MAX_SITES:
            self._hooks[address] = self._watch(address)

    def avoid(self, breakpoints: Collection[int]) -> None:
        """A run starts with breakpoints at these addresses: a site among them is not
        woken in C (its breakpoint stops in front of the hlt, and a wake would step over
        it); one whose breakpoint is gone is woken again."""
        for address, handle in self._hooks.items():
            if address in breakpoints and handle is not None:
                delete_native_hook(self.uc, handle)
                self.uc.ctl_remove_cache(address, address + 1)
                self._hooks[address] = None
            elif address not in breakpoints and handle is None:
                self._hooks[address] = self._watch(address)

    def _watch(self, address: int) -> int:
        handle = self.clock.watch_hlt(address)
        self.uc.ctl_remove_cache(address, address + 1)    # its block, translated without the hook
        return handle
