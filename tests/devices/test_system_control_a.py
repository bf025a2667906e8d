"""Port 0x92 (System Control Port A) as PC chipsets and QEMU's PC machines have it:
reads 0x02 after power-on (A20 enabled), bit 0 written from 0 to 1 resets."""
from __future__ import annotations

from unikernel_sim.run import boot
from unikernel_sim.stops import StopReason

SLOT = 0x200000
POWER_ON_VALUE = 0x02        # QEMU's port 92 after reset: A20 on, nothing else


def test_fast_a20_read_modify_write_does_not_reset(make_guest):
    """The classic `in al, 0x92; or al, 2; out 0x92, al` must leave the machine running."""
    result = boot(make_guest(f"""
        in al, 0x92
        mov [{SLOT:#x}], al
        or al, 2
        and al, 0xfe
        out 0x92, al
        in al, 0x92
        mov [{SLOT + 1:#x}], al
        hlt
    """))
    assert result.stop.reason is StopReason.HALT
    ram = result.machine.ram
    assert ram.u8(SLOT) == POWER_ON_VALUE
    assert ram.u8(SLOT + 1) == POWER_ON_VALUE
    assert 0x92 not in result.machine.board.io.unknown_reads


def test_bit0_is_a_fast_reset(make_guest):
    result = boot(make_guest("""
        in al, 0x92
        or al, 1
        out 0x92, al
        hlt
    """))
    assert result.stop.reason is StopReason.RESET
    assert "port 0x92 fast reset" in result.stop.summary


def test_keyboard_controller_reset_still_names_its_source(make_guest):
    result = boot(make_guest("""
        mov al, 0xfe
        out 0x64, al
        hlt
    """))
    assert result.stop.reason is StopReason.RESET
    assert "keyboard controller" in result.stop.summary
