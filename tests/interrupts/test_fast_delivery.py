"""The C delivery of external interrupts (cpu/_irq_delivery.c) against the Python
reference (cpu/delivery.py): the same guest takes a timer IRQ with the C path on
and off, and the frame, the stack pointer, the handler's RFLAGS and the vector
must be the same bytes - and those of the SDM's figures 6-4 (protected mode,
no privilege change: EIP, CS, EFLAGS) and 6-9 (IA-32e: RIP, CS, RFLAGS, RSP, SS,
on a 16-byte aligned stack, IST when the gate names one). Cases the C path
declines (a privilege change from ring 3) must come out the same through Python."""
from __future__ import annotations

import pytest

from interrupts.harness import (
    IST_TOPS, RSP0_TOP, STACK_TOP, USER_CODE, USER_CODE_SEL, USER_DATA_SEL, USER_STACK_TOP, Gate, IdtGuest,
    build_protected, run_long,
)
from unikernel_sim.run import boot

PIT_FAST = "mov al, 0x34\nout 0x43, al\nmov al, 100\nout 0x40, al\nmov al, 0\nout 0x40, al\nmov al, 0xfe\nout 0x21, al"
IRQ0 = 0x08


def disable_c_path(machine) -> None:
    machine.interrupts.fast.enabled = False


def long_guest(**options) -> IdtGuest:
    return IdtGuest(before=PIT_FAST + options.pop("extra", ""), fault="hlt", flags=0x202, **options)


LONG_CASES = {
    "same stack": long_guest(),
    "misaligned stack": long_guest(extra=f"\nmov rsp, {STACK_TOP - 24:#x}"),
    "IST": long_guest(gates={IRQ0: Gate(ist=2)}),
}


@pytest.mark.parametrize("case", sorted(LONG_CASES))
def test_long_mode_irq_frames_are_the_same_from_c_and_python(tmp_path, case):
    frames = []
    for on_loaded in ([], [disable_c_path]):
        frame, fault_address, result = run_long(LONG_CASES[case], tmp_path, on_loaded=on_loaded)
        assert frame is not None, result.stop.summary
        frames.append((frame, fault_address, result.machine.interrupts.fast.counts))
    (c_frame, address, c_counts), (py_frame, _, py_counts) = frames
    assert c_counts[0] >= 1 and py_counts[0] == 0           # the first run went through C, the second not
    assert c_frame == py_frame
    rip, cs, rflags, old_rsp, ss = c_frame.words[:5]
    assert (c_frame.vector, rip, rflags & 0x200) == (IRQ0, address + 1, 0x200)
    top = IST_TOPS[2] if case == "IST" else old_rsp & ~0xF
    assert c_frame.rsp == top - 40 and c_frame.handler_flags & 0x200 == 0   # interrupt gate: IF clear


def test_protected_mode_irq_frame_is_the_same_from_c_and_python(tmp_path):
    image, fault_address = build_protected(IdtGuest(before=PIT_FAST, fault="hlt", flags=0x202))
    path = tmp_path / "irq32.bin"
    path.write_bytes(image)
    outcomes = []
    for on_loaded in ([], [disable_c_path]):
        result = boot(str(path), deterministic=True, max_instructions=1_000_000, on_loaded=on_loaded)
        assert result.stop.reason.value == "guest-exit", result.stop.summary
        machine = result.machine
        esp = machine.cpu_state().gpr["rsp"] & 0xFFFFFFFF
        outcomes.append((esp, machine.ram.read(esp, 12), machine.ram.u8(0x11C000)))
    assert outcomes[0] == outcomes[1]
    esp, frame, vector = outcomes[0]
    assert vector == IRQ0 and int.from_bytes(frame[:4], "little") == fault_address + 1


def test_an_irq_in_ring_3_goes_through_python_and_switches_to_rsp0(tmp_path):
    """The C path declines a privilege change; Python delivers it (SDM 6.14.2:
    RSP0 from the TSS, SS:RSP of ring 3 in the frame)."""
    to_ring3 = (f"push {USER_DATA_SEL:#x}\npush {USER_STACK_TOP:#x}\npush 0x202\npush {USER_CODE_SEL:#x}\n"
                f"mov rax, {USER_CODE:#x}\npush rax")
    guest = IdtGuest(before=PIT_FAST + "\n" + to_ring3, fault="iretq", user_code="spin:\njmp spin")
    frame, _, result = run_long(guest, tmp_path)
    assert frame is not None, result.stop.summary
    assert result.machine.interrupts.fast.counts == (0, 1)          # declined to Python
    rip, cs, rflags, rsp, ss = frame.words[:5]
    assert frame.vector == IRQ0 and (cs, rsp, ss) == (USER_CODE_SEL, USER_STACK_TOP, USER_DATA_SEL)
    assert frame.rsp == RSP0_TOP - 40 and USER_CODE <= rip < USER_CODE + 2
