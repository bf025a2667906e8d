"""Host watchpoints: stop the run after an instruction writes (or reads) a memory range.

Each is a Unicorn memory hook on its own virtual address range (begin/end), so an
access elsewhere costs nothing and a run without watchpoints pays nothing. Unicorn
calls the hook during the access; stopping there with emu_stop() would put RIP back
before an instruction whose store is done, and it would run twice (Q19). So the
stop is taken after the instruction: exactly, through the instruction counter, when
the machine counts (the gdb stub turns counting on when a watchpoint is set); at the
end of the basic block otherwise.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from unicorn import UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MEM_WRITE

from unikernel_sim.records import Record
from unikernel_sim.stops import Stop, StopReason

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

KINDS = {"write": UC_HOOK_MEM_WRITE, "read": UC_HOOK_MEM_READ, "access": UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE}


class Hit(Record):
    """A watched range touched: by which instruction, at which address."""

    kind: str             # "write", "read" or "access": the watchpoint's kind
    address: int          # the start of the watched range
    accessed: int         # the address the instruction touched
    rip: int              # the instruction that touched it


class Watchpoints:
    def __init__(self, machine: "Machine") -> None:
        self.machine = machine
        self._hooks: dict[tuple[int, int, str], int] = {}     # (address, length, kind) -> hook handle
        self.last_hit: Hit | None = None

    def add(self, address: int, length: int, kind: str = "write") -> None:
        """Stop after an instruction accesses [address, address + length) as kind."""
        if kind not in KINDS:
            raise ValueError(f"watchpoint kind {kind!r}: give write, read or access")
        if length < 1:
            raise ValueError(f"watchpoint length {length} must be at least 1")
        key = (address, length, kind)
        if self.machine.clock.counting:
            self.machine.clock.start_counting(per_instruction=True)   # stop right after the access
        if key not in self._hooks:
            self._hooks[key] = self.machine.uc.hook_add(
                KINDS[kind], self._on_access, key, begin=address, end=address + length - 1)

    def remove(self, address: int, length: int, kind: str = "write") -> bool:
        """Remove that watchpoint; False if there was none."""
        handle = self._hooks.pop((address, length, kind), None)
        if handle is None:
            return False
        self.machine.uc.hook_del(handle)
        return True

    def __len__(self) -> int:
        return len(self._hooks)

    @property
    def keys(self) -> list[tuple[int, int, str]]:
        """(address, length, kind) of every watchpoint."""
        return list(self._hooks)

    def _on_access(self, uc, access: int, accessed: int, size: int, value: int, key) -> None:
        address, _, kind = key
        rip = self.machine.rip
        self.last_hit = Hit(kind, address, accessed, rip)
        verb = "wrote" if access == UC_MEM_WRITE else "read"
        stop = Stop(StopReason.WATCHPOINT, f"{kind} watchpoint at {address:#x}: "
                    f"{self.machine.describe(rip)} {verb} {accessed:#x}")
        self.machine.loop.request_stop_after_instruction(stop)
