"""Host time of one guest call, one snapshot restore, and both together, on the booted
reference firmware (fast mode): medians of --batches batches of --calls each.

    python bench/guest_call_costs.py [--batches 5] [--calls 1000]

The yardsticks are measured in the same process on a bare engine holding the booted
machine's memory and registers (a twin: Unicorn's own RAM, no hook): the bare Unicorn API
sequence a call needs (context save, argument and stack registers, the return address,
emu_start until the sentinel, RAX, context restore) and a restore of a Unicorn snapshot
with memory (UC_CTL_CONTEXT_MEMORY), the raw API's way to go back. The machine itself
snapshots memory by write protection (memory/ram_snapshots.py), so its engine cannot
take Unicorn's memory snapshots: hence the twin.
"""
from __future__ import annotations

import argparse
import struct

from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc
from unicorn import x86_const as x86
from unicorn.unicorn_const import UC_CTL_CONTEXT_CPU, UC_CTL_CONTEXT_MEMORY

from unikernel_sim.cpu.unicorn_compat import set_context_mode
from unikernel_sim.firmware import build_firmware
from unikernel_sim.pytest_plugin import boot_to_ready
from batches import per_call_us  # bench/batches.py, beside this script
from markdown_table import print_table  # bench/markdown_table.py, beside this script

RED_ZONE = 128
COPY_CHUNK = 1 << 20


def bare_twin(machine) -> Uc:
    """A hook-less engine with machine's RAM (the non-zero MiBs) and registers."""
    twin = Uc(UC_ARCH_X86, UC_MODE_64)
    twin.mem_map(0, machine.ram.size, UC_PROT_ALL)
    zero = bytes(COPY_CHUNK)
    for address in range(0, machine.ram.size, COPY_CHUNK):
        chunk = bytes(machine.uc.mem_read(address, COPY_CHUNK))
        if chunk != zero:
            twin.mem_write(address, chunk)
    twin.context_restore(machine.uc.context_save())
    return twin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    booted = boot_to_ready(str(build_firmware()))
    machine, snapshot = booted.machine, booted.snapshot

    machine.call("strlen", 0x100000)                    # the sentinel's hlt is in place
    machine.restore(snapshot)
    uc, strlen = bare_twin(machine), machine.symbols.resolve("strlen")
    sentinel = machine._caller.sentinel
    set_context_mode(uc, UC_CTL_CONTEXT_CPU | UC_CTL_CONTEXT_MEMORY)
    bare_snapshot = uc.context_save()
    set_context_mode(uc, UC_CTL_CONTEXT_CPU)

    def bare_call() -> int:
        saved = uc.context_save()
        rsp = ((uc.reg_read(x86.UC_X86_REG_RSP) - RED_ZONE) & ~0xF) - 8
        uc.mem_write(rsp, struct.pack("<Q", sentinel))  # the firmware's stack is identity-mapped
        uc.reg_write(x86.UC_X86_REG_RDI, 0x100000)
        uc.reg_write(x86.UC_X86_REG_RAX, 0)
        uc.reg_write(x86.UC_X86_REG_RSP, rsp)
        uc.emu_start(strlen, sentinel)
        value = uc.reg_read(x86.UC_X86_REG_RAX)
        uc.context_restore(saved)
        return value

    def bare_restore() -> None:
        set_context_mode(uc, UC_CTL_CONTEXT_CPU | UC_CTL_CONTEXT_MEMORY)
        uc.context_restore(bare_snapshot)
        set_context_mode(uc, UC_CTL_CONTEXT_CPU)

    assert bare_call() == machine.call("strlen", 0x100000)

    def restore_and(function: str, argument: int):
        def action() -> None:
            machine.restore(snapshot)
            machine.call(function, argument)
        return action

    rows = [("guest call strlen(0x100000)", lambda: machine.call("strlen", 0x100000), bare_call),
            ("snapshot restore", lambda: machine.restore(snapshot), bare_restore),
            ("restore + strlen(0x100000)", restore_and("strlen", 0x100000),
             lambda: (bare_restore(), bare_call())),
            ("restore + malloc(5632)", restore_and("malloc", 5632), None)]
    def measured():
        for label, action, bare in rows:
            ours = per_call_us(action, args.calls, args.batches)
            if bare is None:
                yield label, f"{ours:.1f}", "-", "-"
                continue
            floor = per_call_us(bare, args.calls, args.batches)
            yield label, f"{ours:.1f}", f"{floor:.1f}", f"{ours / floor:.2f}x"

    print_table([f"measurement (median of {args.batches} x {args.calls})", "unisim us", "bare Unicorn us", "ratio"],
                measured())
    machine.restore(snapshot)


if __name__ == "__main__":
    main()
