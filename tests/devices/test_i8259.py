"""8259A pair against the datasheet: initialisation sequence, masks, fully
nested priorities, EOI and rotation commands, OCW3 register reads, poll,
auto-EOI, level mode, and spurious IR7/IR15."""
from __future__ import annotations

from unikernel_sim.devices.i8259 import PicPair

M_CMD, M_DATA, S_CMD, S_DATA = 0x20, 0x21, 0xA0, 0xA1


def out(pic: PicPair, port: int, value: int) -> None:
    chip = pic.master if port in (M_CMD, M_DATA) else pic.slave
    chip.io_write(port, 1, value)


def inp(pic: PicPair, port: int) -> int:
    chip = pic.master if port in (M_CMD, M_DATA) else pic.slave
    return chip.io_read(port, 1)


def remap(pic: PicPair, master=0x20, slave=0x28, icw4=0x01) -> None:
    """The classic PC sequence: ICW1 (edge, cascade, ICW4), ICW2 base, ICW3 wiring, ICW4 8086."""
    out(pic, M_CMD, 0x11)
    out(pic, S_CMD, 0x11)
    out(pic, M_DATA, master)
    out(pic, S_DATA, slave)
    out(pic, M_DATA, 0x04)       # slave on IR2
    out(pic, S_DATA, 0x02)       # slave identity 2
    out(pic, M_DATA, icw4)
    out(pic, S_DATA, icw4)


def test_power_on_state_as_bios_leaves_it():
    pic = PicPair()
    pic.power_on_state()
    assert inp(pic, M_DATA) == 0xFB and inp(pic, S_DATA) == 0xFF
    pic.master.imr = 0
    pic.pulse_irq(0)
    assert pic.acknowledge() == (0x08, 0)        # BIOS vector base 0x08


def test_icw1_clears_mask_and_icw2_sets_base():
    pic = PicPair()
    pic.power_on_state()
    remap(pic)
    assert inp(pic, M_DATA) == 0 and inp(pic, S_DATA) == 0   # ICW1 clears IMR
    pic.pulse_irq(0)
    assert pic.acknowledge() == (0x20, 0)
    out(pic, M_CMD, 0x20)
    pic.pulse_irq(12)
    assert pic.acknowledge() == (0x2C, 12)


def test_mask_blocks_until_unmasked_then_delivers():
    pic = PicPair()
    remap(pic)
    out(pic, M_DATA, 0x01)
    pic.pulse_irq(0)
    assert not pic.interrupt_pending
    out(pic, M_CMD, 0x0A)                          # OCW3: read IRR
    assert inp(pic, M_CMD) & 0x01                 # requested, though masked
    out(pic, M_DATA, 0x00)
    assert pic.interrupt_pending


def test_fully_nested_priority_and_non_specific_eoi():
    pic = PicPair()
    remap(pic)
    pic.pulse_irq(3)
    assert pic.acknowledge() == (0x23, 3)
    pic.pulse_irq(5)
    assert not pic.interrupt_pending             # lower priority than IR3 in service
    pic.pulse_irq(1)
    assert pic.acknowledge() == (0x21, 1)        # higher priority nests
    out(pic, M_CMD, 0x0B)                          # OCW3: read ISR
    assert inp(pic, M_CMD) == 0b1010
    out(pic, M_CMD, 0x20)                          # non-specific EOI clears the highest (IR1)
    assert inp(pic, M_CMD) == 0b1000
    out(pic, M_CMD, 0x20)
    assert pic.acknowledge() == (0x25, 5)


def test_specific_eoi():
    pic = PicPair()
    remap(pic)
    pic.pulse_irq(4)
    pic.acknowledge()
    pic.pulse_irq(2 + 8 - 8)                       # IR2 (cascade line itself, master side)
    out(pic, M_CMD, 0x0B)
    out(pic, M_CMD, 0x64)                          # specific EOI for level 4
    assert inp(pic, M_CMD) & 0x10 == 0


def test_rotate_on_non_specific_eoi_makes_serviced_level_lowest():
    pic = PicPair()
    remap(pic)
    pic.pulse_irq(0)
    pic.acknowledge()
    out(pic, M_CMD, 0xA0)                          # rotate on non-specific EOI
    pic.pulse_irq(0)
    pic.pulse_irq(7)
    assert pic.acknowledge() == (0x27, 7)         # IR0 is now the lowest priority
    out(pic, M_CMD, 0xC7)                          # set priority: IR7 lowest again


def test_cascade_slave_needs_both_eois():
    pic = PicPair()
    remap(pic)
    pic.pulse_irq(14)
    assert pic.acknowledge() == (0x2E, 14)
    out(pic, M_CMD, 0x0B)
    out(pic, S_CMD, 0x0B)
    assert inp(pic, M_CMD) == 0x04 and inp(pic, S_CMD) == 0x40
    pic.pulse_irq(15)
    assert not pic.interrupt_pending             # master IR2 in service blocks the slave
    out(pic, S_CMD, 0x20)
    out(pic, M_CMD, 0x20)
    assert pic.acknowledge() == (0x2F, 15)


def test_auto_eoi_leaves_nothing_in_service():
    pic = PicPair()
    remap(pic, icw4=0x03)                          # 8086 + AEOI
    pic.pulse_irq(1)
    assert pic.acknowledge() == (0x21, 1)
    out(pic, M_CMD, 0x0B)
    assert inp(pic, M_CMD) == 0
    pic.pulse_irq(1)
    assert pic.interrupt_pending


def test_poll_command_acknowledges():
    pic = PicPair()
    remap(pic)
    pic.pulse_irq(6)
    out(pic, M_CMD, 0x0C)                          # OCW3 poll
    assert inp(pic, M_CMD) == 0x86                # interrupt, level 6
    out(pic, M_CMD, 0x0B)
    assert inp(pic, M_CMD) == 0x40                # and now in service


def test_spurious_irq7_when_request_vanishes_level_mode():
    pic = PicPair()
    out(pic, M_CMD, 0x19)                          # ICW1 with LTIM (level triggered)
    out(pic, M_DATA, 0x20)
    out(pic, M_DATA, 0x04)
    out(pic, M_DATA, 0x01)
    pic.set_irq(3, True)
    assert pic.interrupt_pending
    pic.set_irq(3, False)                          # gone before the CPU's INTA
    assert pic.acknowledge() == (0x27, None)      # default IR7, not put in service
    out(pic, M_CMD, 0x0B)
    assert inp(pic, M_CMD) == 0


def test_spurious_irq15_sets_master_isr2_only():
    pic = PicPair()
    out(pic, S_CMD, 0x19)                          # slave level triggered
    out(pic, S_DATA, 0x28)
    out(pic, S_DATA, 0x02)
    out(pic, S_DATA, 0x01)
    out(pic, M_CMD, 0x11)
    out(pic, M_DATA, 0x20)
    out(pic, M_DATA, 0x04)
    out(pic, M_DATA, 0x01)
    pic.set_irq(9, True)
    pic.slave.set_line(1, False)                   # the slave's request vanishes...
    pic.master.set_line(2, True)                   # ...after the master latched the cascade
    vector, irq = pic.acknowledge()
    assert (vector, irq) == (0x2F, None)
    out(pic, M_CMD, 0x0B)
    out(pic, S_CMD, 0x0B)
    assert inp(pic, M_CMD) == 0x04 and inp(pic, S_CMD) == 0   # OS must EOI the master only


def test_data_port_reads_return_the_mask():
    pic = PicPair()
    remap(pic)
    out(pic, M_DATA, 0xA5)
    out(pic, S_DATA, 0x5A)
    assert (inp(pic, M_DATA), inp(pic, S_DATA)) == (0xA5, 0x5A)


def test_edge_request_latched_while_cpu_busy():
    """An edge latches in IRR even if the line drops again (as QEMU's 8259)."""
    pic = PicPair()
    remap(pic)
    pic.pulse_irq(0)
    assert pic.acknowledge() == (0x20, 0)
