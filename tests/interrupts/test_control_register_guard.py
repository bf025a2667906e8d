"""MOV to CR0/CR4 that hardware refuses (SDM vol. 3A 9.8.5): #GP(0) at the MOV,
which does not execute, delivered through the guest's own IDT."""
from __future__ import annotations

import pytest

from interrupts.harness import IdtGuest, build_long, run_long, run_protected
from unikernel_sim.run import boot
from unikernel_sim.cpu.control_register_guard import candidate_offsets, refused_write

GP = 13


def test_clearing_cr4_pae_in_long_mode_raises_gp_at_the_mov(tmp_path):
    guest = IdtGuest(before="mov rax, cr4\nand rax, -33", fault="mov cr4, rax")
    frame, fault_address, result = run_long(guest, tmp_path)
    assert frame is not None and frame.vector == GP, result.stop.summary
    assert frame.words[0] == 0 and frame.words[1] == fault_address
    assert result.machine.cpu_state().cr4 & 0x20                       # PAE is still set
    assert result.machine.control_registers.refusals == [(fault_address, "clears CR4.PAE while IA-32e mode is active")]


@pytest.mark.parametrize("options", [{}, {"max_instructions": 1_000_000}],
                         ids=["fast, code hooks", "fast with a budget, counting hook"])
def test_the_guard_works_without_deterministic_mode(tmp_path, options):
    image, fault_address = build_long(IdtGuest(before="mov rax, cr4\nand rax, -33", fault="mov cr4, rax"))
    path = tmp_path / "guest.bin"
    path.write_bytes(image)
    result = boot(str(path), **options)
    machine = result.machine
    assert machine.control_registers.refusals == [(fault_address, "clears CR4.PAE while IA-32e mode is active")]
    assert machine.cpu_state().cr4 & 0x20
    # The #GP frame the guest's handler got (not VECTOR_SLOT: in fast mode the debug-exit
    # `out` lets the rest of its block run, which falls into the next stub, Q9).
    rsp = machine.cpu_state().gpr["rsp"]
    assert (machine.ram.u64(rsp), machine.ram.u64(rsp + 8)) == (0, fault_address)


def test_enabling_paging_with_lme_and_no_pae_raises_gp(tmp_path):
    guest = IdtGuest(before="""
        mov eax, cr0
        and eax, 0x7fffffff
        mov cr0, eax
        mov ecx, 0xc0000080
        rdmsr
        or eax, 0x100
        wrmsr
        mov eax, cr0
        or eax, 0x80000000
    """, fault="mov cr0, eax")
    frame, fault_address, result = run_protected(guest, tmp_path)
    assert frame is not None and frame.vector == GP, result.stop.summary
    assert frame.words[0] == 0 and frame.words[1] == fault_address
    assert not result.machine.cpu_state().cr0 & 0x80000000              # paging stayed off


def test_the_rules_and_the_scan():
    lma, lme, pae, pg, pe = 0x400, 0x100, 0x20, 0x80000000, 1
    assert refused_write(4, 0, pg | pe, pae, lme | lma, True)
    assert refused_write(4, pae, pg | pe, pae, lme | lma, True) is None
    assert refused_write(0, pg | pe, pe, 0, lme, False)
    assert refused_write(0, pg | pe, pe, pae, lme, False) is None          # the correct order: PAE first
    assert refused_write(0, pg, 0, 0, 0, False)                          # PG without PE
    assert refused_write(0, pe, pg | pe, pae, lme | lma, True)           # PG cleared in 64-bit mode
    assert refused_write(0, pe, pg | pe, pae, lme | lma, False) is None  # ... but allowed in compatibility mode
    # mov cr4, rax (0F 22 E0) and mov cr0, r8 (41 0F 22 C0)
    assert candidate_offsets(b"\x90\x0f\x22\xe0\x41\x0f\x22\xc0") == [1, 4, 5]
    assert candidate_offsets(b"\x0f\x32\x90\x0f\x30") == [0, 3]                 # RDMSR, WRMSR
