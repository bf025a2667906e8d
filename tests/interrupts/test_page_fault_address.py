"""CR2 holds the linear address of the last page fault (SDM vol. 3A, 6.15, interrupt 14)
until the next one, however the run is cut. Unicorn ends every emu_start with a page walk
of its `until` address minus one, which set CR2 where the guest left that address
unmapped (docs/unicorn-quirks.md, Q1): a #PF handler stepped through (a debugger, budgets,
a timer stop) read a wrong fault address, and the crash report showed it too.

The guests unmap the top 4 MiB of the address space, as a kernel with its own page tables
may, then read the harness's not-present page."""
from __future__ import annotations

import pytest

from interrupts.harness import NP_PAGE, PD32, IdtGuest, build_protected
from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

SEEN = 0x300000                          # where the handler stores what it read of CR2
UNMAP_TOP = f"mov dword ptr [{PD32 + 4092:#x}], 0\nmov eax, cr3\nmov cr3, eax\n"
HANDLER = f"nop\nnop\nmov eax, cr2\nmov [{SEEN:#x}], eax\nmov al, 0\nout 0xf4, al\nhlt"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    data, _ = build_protected(IdtGuest(before=UNMAP_TOP, fault=f"mov eax, [{NP_PAGE:#x}]", flags=0x2,
                                       handlers={14: HANDLER}))
    path = tmp_path_factory.mktemp("cr2") / "pf.bin"
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("step", [None, 1, 3])
def test_the_handler_and_the_host_read_the_fault_address(image, deterministic, step):
    machine = Machine(16, deterministic=deterministic)
    machine.load(image)
    while True:
        stop = machine.run(max_instructions=step)
        if stop.reason is not StopReason.BUDGET:
            break
        assert machine.cpu_state().cr2 in (0, NP_PAGE)       # never another address
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    assert machine.ram.u32(SEEN) == NP_PAGE
    assert machine.cpu_state().cr2 == NP_PAGE


def test_the_crash_report_shows_the_fault_address(tmp_path, capfd):
    from unikernel_sim.cli import main
    empty_idt = "mov dword ptr [0x300000], 0\nmov dword ptr [0x300004], 0\nlidt [0x300000]\n"
    data, _ = build_protected(IdtGuest(before=UNMAP_TOP + empty_idt, fault=f"mov eax, [{NP_PAGE:#x}]", flags=0x2))
    path = tmp_path / "triple.bin"
    path.write_bytes(data)
    main(["boot", str(path)])
    report = capfd.readouterr().err
    register_line = next(line for line in report.splitlines() if line.strip().startswith("cr0="))
    assert f"cr2={NP_PAGE:#x}" in register_line, register_line
