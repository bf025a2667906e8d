"""The PIIX4 power-management registers the FADT points at (ACPI 6.5 section 4.8):
the PM timer's rate against the PIT (3.579545 MHz, 24 bits: section 4.8.3.3), the
ACPI-enable SMI command, TMR_STS and the SCI, and the sleep-state power-off.
Oracles: the specification's numbers, and QEMU 7.2's values recorded by probe_apic.c."""
from __future__ import annotations

import pytest

from unikernel_sim.devices.piix4_pm import Piix4PowerManagement
from unikernel_sim.run import boot

PM_TIMER_HZ = 3_579_545
PIT_HZ = 1_193_182
TEN_MS = PIT_HZ // 100

WAIT_10MS_ON_PIT_CHANNEL_2 = f"""
    in al, 0x61
    and al, 0xfd
    or al, 1
    out 0x61, al
    mov al, 0xb0
    out 0x43, al
    mov al, {TEN_MS & 0xff}
    out 0x42, al
    mov al, {TEN_MS >> 8}
    out 0x42, al
wait:
    in al, 0x61
    test al, 0x20
    jz wait
"""


def test_the_pm_timer_runs_at_3_579545_mhz_against_the_pit(make_guest):
    source = ("mov dx, 0x608\nin eax, dx\nmov ebx, eax\n" + WAIT_10MS_ON_PIT_CHANNEL_2
              + "mov dx, 0x608\nin eax, dx\nsub eax, ebx\nand eax, 0xffffff\nmov [0x7000], eax\n"
              + "mov al, 0\nout 0xf4, al")
    result = boot(make_guest(source), deterministic=True, max_instructions=5_000_000)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    ticks = result.machine.ram.u32(0x7000)
    expected = PM_TIMER_HZ * TEN_MS / PIT_HZ                       # 35,795 (QEMU recorded 35,824)
    assert abs(ticks - expected) < expected * 0.005, ticks


def test_acpi_enable_through_the_smi_command_port(make_guest):
    """Recorded on QEMU: PM1 control 0 after SeaBIOS, SCI_EN after writing 0xF1 to 0xB2."""
    source = ("mov dx, 0x604\nin ax, dx\nmov [0x7000], eax\nmov al, 0xf1\nout 0xb2, al\n"
              "mov dx, 0x604\nin ax, dx\nmov [0x7004], eax\nmov al, 0xf0\nout 0xb2, al\n"
              "mov dx, 0x604\nin ax, dx\nmov [0x7008], eax\nmov al, 0\nout 0xf4, al")
    result = boot(make_guest(source), max_instructions=100_000)
    ram = result.machine.ram
    assert [ram.u32(0x7000 + 4 * i) & 0xFFFF for i in range(3)] == [0, 1, 0]


def test_tmr_sts_raises_the_sci_when_enabled():
    """Section 4.8.3.3: TMR_STS is set when bit 23 of the counter changes (every
    2^23 / 3.579545 MHz = 2.343 s); with TMR_EN and SCI_EN the SCI (IRQ 9) is
    asserted, and writing 1 to TMR_STS clears it and the SCI."""
    now = [0]
    levels = []
    pm = Piix4PowerManagement(lambda: now[0], lambda value, state: None, sci=levels.append)
    pm.io_write(0x602, 2, 1)                                       # TMR_EN
    pm.io_write(0xB2, 1, 0xF1)                                     # SCI_EN
    when = pm.next_event_ns()
    assert when == -(-(1 << 23) * 1_000_000_000 // PM_TIMER_HZ)    # 2.343 s
    now[0] = when
    pm.advance(when)
    assert pm.io_read(0x600, 2) & 1 and levels[-1] is True
    pm.io_write(0x600, 2, 1)
    assert not pm.io_read(0x600, 2) & 1 and levels[-1] is False


@pytest.mark.parametrize("sleep_type,state", [(0, "S5 soft off"), (1, "S3 suspend to RAM")])
def test_slp_en_powers_off_and_names_the_sleep_state(make_guest, sleep_type, state):
    value = (sleep_type << 10) | (1 << 13)
    result = boot(make_guest(f"mov dx, 0x604\nmov ax, {value}\nout dx, ax\nhlt"), max_instructions=10_000)
    assert result.stop.reason.value == "power-off"
    assert result.stop.summary == f"guest powered off (ACPI PM1a control {value:#06x}: {state})"
