"""Snapshots of a whole Machine: CPU, RAM, devices, clock and console lengths.

RAM is write-protected at a snapshot (memory/ram_snapshots.py): saving copies
nothing, the first store to a page afterwards saves it, and restoring copies back
only the pages written since. The CPU is a CPU-only Unicorn context.

A snapshot may be restored any number of times. Restoring an older snapshot
after a newer one was taken invalidates the newer one (one chain of snapshot
levels, as Unicorn's own snapshots): restoring it raises StaleSnapshotError.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from unikernel_sim.cpu.unicorn_compat import UcContext
from unikernel_sim.devices.device import State
from unikernel_sim.memory.ram_snapshots import RamLevel
from unikernel_sim.records import Record
from unikernel_sim.stops import ExceptionRecord

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine


class Snapshot(Record):
    """Immutable: restoring reads it, any number of times. This module is imported at
    a machine's first snapshot, not at start-up; a restore reaches it through the
    snapshot's own method, with no import statement on that ~7 us path."""

    context: UcContext                # CPU only
    ram: RamLevel                     # the memory's level (memory/ram_snapshots.py)
    devices: list[State]              # each device's declared fields (devices/device.py), in board order
    clock: tuple[bytes, int]
    serial_length: int
    debugcon_length: int
    serial_total: int
    debugcon_total: int
    panic_message: str | None
    irq_count: int
    last_exception: ExceptionRecord | None      # never mutated once made, so shared
    code_fingerprint: tuple[bytes, ...] | None = None   # the code bytes (cpu/code_cache.py)

    def restore_into(self, machine: "Machine", *, flush: bool = False) -> None:
        """Put machine back as it was when this was taken (Machine.restore)."""
        machine.code_cache.restore(self.context, self.ram, self.code_fingerprint, flush=flush)
        machine.board.load_state(self.devices)
        machine.clock.restore(self.clock)
        machine.serial.rewind(self.serial_total, self.serial_length)
        machine.debugcon.rewind(self.debugcon_total, self.debugcon_length)
        machine.panic_message = self.panic_message
        machine.interrupts.irq_count = self.irq_count
        machine.interrupts.last_exception = self.last_exception

    def __repr__(self) -> str:
        return (f"<Snapshot at {self.clock[1]} ns, {len(self.devices)} devices, "
                f"{self.serial_length} serial bytes>")


def take_snapshot(machine: "Machine") -> Snapshot:
    return Snapshot(
        context=machine.uc.context_save(),
        ram=machine.ram.snapshots.take(),
        devices=machine.board.save_state(),
        clock=machine.clock.snapshot(),
        serial_length=len(machine.serial.data),
        debugcon_length=len(machine.debugcon.data),
        serial_total=machine.serial.total,
        debugcon_total=machine.debugcon.total,
        panic_message=machine.panic_message,
        irq_count=machine.interrupts.irq_count,
        last_exception=machine.interrupts.last_exception,
        code_fingerprint=machine.code_cache.fingerprint(),
    )
