"""Outside the identity map / outside RAM: a #PF (or an access Unicorn found no
RAM for) whose address lies past what the page tables map, naming the range
they actually map."""
from __future__ import annotations

from unikernel_sim.arch import PageFaultError
from unikernel_sim.diagnostics.checkers import Hint
from unikernel_sim.diagnostics.device_windows import device_window
from unikernel_sim.diagnostics.mapped import format_ranges, mapped_ranges
from unikernel_sim.stops import StopReason


def check(evidence) -> Hint | None:
    machine = evidence.machine
    fault = evidence.page_fault
    if fault is not None:
        address, error, rip = fault
        kind = "fetched" if error & PageFaultError.I or address == rip else ("wrote" if error & PageFaultError.W else "read")
    elif evidence.stop.reason is StopReason.OUTSIDE_RAM:
        address, rip = evidence.stop.fault_address, evidence.stop.rip
        kind = "accessed"
    else:
        return None
    where = evidence.where(rip)
    physical = _physical(machine, address) if fault is not None else address
    if physical is None:
        physical = address if address < (1 << 32) else None   # unmapped: only a low address can mean RAM
    if physical is not None and physical >= machine.ram.size:
        window = device_window(physical)
        if window is not None:
            return Hint("device-not-emulated",
                        f"device not emulated: {where} {kind} {address:#x}, {window.device}; unisim has no "
                        f"such device ({window.instead})", where)
        return Hint("outside-ram", f"outside RAM: {where} {kind} {address:#x}, but guest RAM ends at "
                                   f"{machine.ram.size:#x} ({machine.ram.size >> 20} MiB)", where)
    ranges = mapped_ranges(machine)
    if ranges is None or any(start <= address < end for start, end in ranges):
        return None
    if ranges and address < max(end for _, end in ranges):
        return None           # a hole inside the mapping: not this mistake
    return Hint("outside-identity-map",
                f"outside the identity map: {where} {kind} {address:#x}, but the page tables map only "
                f"{format_ranges(ranges)}", where)


def _physical(machine, address: int) -> int | None:
    """The physical address behind a faulting virtual address: where paging maps it
    (a kernel may map the APIC page anywhere), else None. An unmapped higher-half
    address says nothing about the size of RAM."""
    return machine.translate(address).physical
