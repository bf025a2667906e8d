"""Virtual time seen by tiny guests: the deterministic TSC, and the PIT and PIC
as a PC BIOS leaves them."""
from __future__ import annotations

import pytest

from interrupts.harness import COUNTER_SLOT, IdtGuest, run_protected
from unikernel_sim.run import boot

SLOT = 0x200000


def test_deterministic_rdtsc_counts_two_ticks_per_instruction(make_guest):
    """1 ns per instruction and a 2 GHz TSC: 2 ticks per instruction counted."""
    nops = "\n".join(["nop"] * 100)
    path = make_guest(f"""
        rdtsc
        mov dword ptr [{SLOT:#x}], eax
        mov dword ptr [{SLOT + 4:#x}], edx
        {nops}
        rdtsc
        mov dword ptr [{SLOT + 8:#x}], eax
        mov dword ptr [{SLOT + 12:#x}], edx
        mov al, 0
        out 0xf4, al
    """)
    values = []
    for _ in range(2):
        result = boot(path, deterministic=True)
        ram = result.machine.ram
        values.append((ram.u64(SLOT), ram.u64(SLOT + 8)))
    assert values[0] == values[1]
    first, second = values[0]
    assert second - first == 2 * (2 + 100 + 1)      # two stores, 100 nops, the second rdtsc


MSR_TSC_AUX = 0xC0000103
TSC_AUX_VALUE = 0x12345678
RDTSCP_PROBE = f"""
    mov ecx, {MSR_TSC_AUX:#x}
    mov eax, {TSC_AUX_VALUE:#x}
    xor edx, edx
    wrmsr
    rdtsc
    mov dword ptr [{SLOT:#x}], eax
    mov dword ptr [{SLOT + 4:#x}], edx
    mov ecx, 0x55
    rdtscp
    mov dword ptr [{SLOT + 8:#x}], eax
    mov dword ptr [{SLOT + 12:#x}], edx
    mov dword ptr [{SLOT + 16:#x}], ecx
    rdtsc
    mov dword ptr [{SLOT + 20:#x}], eax
    mov dword ptr [{SLOT + 24:#x}], edx
    mov al, 0
    out 0xf4, al
"""


def test_rdtscp_reads_the_same_deterministic_tsc_and_tsc_aux(make_guest):
    """SDM vol. 2B, RDTSCP: EDX:EAX = TSC, ECX = IA32_TSC_AUX[31:0]. Same clock as RDTSC,
    so 2 ticks per instruction between them, and the same values on every run."""
    path = make_guest(RDTSCP_PROBE)
    runs = []
    for _ in range(2):
        ram = boot(path, deterministic=True).machine.ram
        runs.append((ram.u64(SLOT), ram.u64(SLOT + 8), ram.u32(SLOT + 16), ram.u64(SLOT + 20)))
    assert runs[0] == runs[1]
    before, tscp, aux, after = runs[0]
    assert aux == TSC_AUX_VALUE
    assert tscp - before == 2 * (2 + 1 + 1)        # two stores, mov ecx, the rdtscp
    assert after - tscp == 2 * (3 + 1)             # three stores, the rdtsc


def test_rdtscp_follows_rdtsc_in_fast_mode(make_guest):
    ram = boot(make_guest(RDTSCP_PROBE)).machine.ram
    before, tscp, after = ram.u64(SLOT), ram.u64(SLOT + 8), ram.u64(SLOT + 20)
    assert before < tscp < after
    assert ram.u32(SLOT + 16) == TSC_AUX_VALUE


def test_rdtsc_is_monotonic_in_fast_mode(make_guest):
    path = make_guest(f"""
        rdtsc
        mov dword ptr [{SLOT:#x}], eax
        mov dword ptr [{SLOT + 4:#x}], edx
        mov ecx, 100000
    spin:
        dec ecx
        jnz spin
        rdtsc
        mov dword ptr [{SLOT + 8:#x}], eax
        mov dword ptr [{SLOT + 12:#x}], edx
        mov al, 0
        out 0xf4, al
    """)
    ram = boot(path).machine.ram
    assert ram.u64(SLOT + 8) > ram.u64(SLOT)


BIOS_TIMER_HANDLER = f"""
    inc dword ptr [{COUNTER_SLOT:#x}]
    mov al, 0x20
    out 0x20, al
    iretd
"""


def test_power_on_pit_ticks_at_18_2_hz_once_irq0_is_unmasked(tmp_path):
    """No PIT programming: the BIOS state already runs channel 0 at ~18.2 Hz, and
    IRQ 0 arrives at the BIOS vector 0x08 as soon as the kernel unmasks it and sti."""
    guest = IdtGuest(
        before="mov al, 0xfe\nout 0x21, al",      # after the harness masked all: unmask IRQ 0
        fault="nop",
        flags=0x202,
        after=f"""
        wait:
            hlt
            cmp dword ptr [{COUNTER_SLOT:#x}], 3
            jb wait
            mov al, 0
            out 0xf4, al
        """,
        handlers={8: BIOS_TIMER_HANDLER},
    )
    _, _, result = run_protected(guest, tmp_path)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    assert result.machine.ram.u32(COUNTER_SLOT) == 3
    elapsed_s = result.machine.clock.now_ns() / 1e9
    assert elapsed_s == pytest.approx(3 * 65536 / 1_193_182, rel=0.01)
