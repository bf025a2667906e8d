"""The interrupt shadow of STI (Intel SDM vol. 2B, STI: "the processor will
respond to external interrupts after executing the next instruction").

`sti; hlt` is how every idle loop waits for an interrupt without a race: an
IRQ already pending when STI runs must be taken after the `hlt`, never between
the two, or the `hlt` sleeps past the very wake-up it was waiting for. A slice
of the simulator that ends right after STI (here a breakpoint on the `hlt`,
in real runs a host-timer stop) must not deliver it early.
"""
from __future__ import annotations

import struct

import pytest

from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

from interrupts.harness import VECTOR_SLOT, IdtGuest, build_protected

PIC_VECTOR_BASE = 0x20
IRQ0_VECTOR = PIC_VECTOR_BASE + 0
PIT_COUNT = 100                                   # ~84 us at 1.193182 MHz
OCW3_READ_IRR = 0x0A                              # OCW3: the next read of port 0x20 returns the IRR
IRR_IRQ0 = 0x01

# ICW1 (edge, cascade, ICW4 follows), ICW2 (vector base), ICW3 (slave on IRQ 2),
# ICW4 (8086 mode), OCW1 (only IRQ 0 unmasked); PIT channel 0 lobyte/hibyte mode 2;
# then, with IF=0, poll the master's IRR (OCW3 read-IRR) until IRQ 0 is requested.
# Polling the IRR rather than spinning a fixed count keeps the test free of host
# speed: in fast mode the PIT runs on host time, and a fixed spin once ended
# before the first tick on a faster machine.
PIC_AND_PIT_SETUP = f"""
    mov al, 0x11
    out 0x20, al
    mov al, {PIC_VECTOR_BASE:#x}
    out 0x21, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x01
    out 0x21, al
    mov al, 0xfe
    out 0x21, al
    mov al, 0x34
    out 0x43, al
    mov al, {PIT_COUNT & 0xFF:#x}
    out 0x40, al
    mov al, {PIT_COUNT >> 8:#x}
    out 0x40, al
    mov al, {OCW3_READ_IRR:#x}
    out 0x20, al
wait_irr:
    in al, 0x20
    test al, {IRR_IRQ0:#x}
    jz wait_irr
"""


@pytest.mark.parametrize("deterministic", [True, False], ids=["deterministic", "fast"])
def test_irq_pending_at_sti_is_taken_after_the_next_instruction(tmp_path, deterministic):
    guest = IdtGuest(before=PIC_AND_PIT_SETUP, fault="sti", flags=0x46)   # harness appends `hlt`
    image, sti_address = build_protected(guest)
    hlt_address = sti_address + 1
    path = tmp_path / "sti_hlt.bin"
    path.write_bytes(image)
    machine = Machine(16, deterministic=deterministic)
    machine.load(str(path))

    breakpoint_address = machine.add_breakpoint(hlt_address)
    stop = machine.run(max_instructions=10_000_000, timeout=30)
    assert stop.reason is StopReason.BREAKPOINT
    assert machine.rip == hlt_address
    assert machine.board.pic.interrupt_pending            # the race this test is about

    machine.remove_breakpoint(breakpoint_address)
    stop = machine.run(max_instructions=1_000_000, timeout=30)
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    assert machine.ram.u8(VECTOR_SLOT) == IRQ0_VECTOR
    esp = machine.cpu_state().gpr["rsp"] & 0xFFFFFFFF
    return_eip = struct.unpack("<I", machine.ram.read(esp, 4))[0]
    assert return_eip == hlt_address + 1, f"IRQ taken at {return_eip:#x}, inside the STI shadow"
