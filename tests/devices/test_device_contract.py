"""The device contract (devices/device.py) and the board: an MMIO device of our own
driven by guest code with every access width, its state through snapshots, and
the VMState rule (declared fields only, no callbacks) for every device of the PC."""
from __future__ import annotations

import struct
from collections import deque

import pytest
from keystone import KS_ARCH_X86, KS_MODE_64, Ks

from unikernel_sim.devices.device import Device, MmioWindow, PortRange, Stateful
from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

WINDOW = 0xFEB0_0000
CODE = 0x1000
STACK = 0x8000


class RegisterFile(Device):
    """16 bytes of registers in one MMIO page, plus a port that reads back a counter."""

    name = "test-register-file"
    mmio = (MmioWindow(WINDOW, 0x1000),)
    ports = (PortRange(0x510, 1),)
    saved_fields = ("registers", "port_writes")

    def __init__(self) -> None:
        self.registers = bytearray(16)
        self.port_writes = 0
        self.accesses: list[tuple[str, int, int]] = []     # wiring for the test, not state

    def mmio_read(self, offset: int, size: int) -> int:
        self.accesses.append(("read", offset, size))
        return int.from_bytes(self.registers[offset:offset + size], "little")

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.accesses.append(("write", offset, size))
        self.registers[offset:offset + size] = value.to_bytes(size, "little")

    def io_read(self, port: int, size: int) -> int:
        return self.port_writes

    def io_write(self, port: int, size: int, value: int) -> None:
        self.port_writes += 1


def run_code(machine: Machine, source: str) -> None:
    """Run 64-bit code from CODE to its hlt (the engine starts in flat long mode)."""
    code, _ = Ks(KS_ARCH_X86, KS_MODE_64).asm(source + "\nhlt", CODE)
    machine.ram.write(CODE, bytes(code))
    machine.uc.ctl_remove_cache(CODE, CODE + len(code))
    machine.uc.reg_write(machine_reg("rip"), CODE)
    machine.uc.reg_write(machine_reg("rsp"), STACK)
    stop = machine.run(timeout=10)
    assert stop.reason == StopReason.HALT, stop.summary


def machine_reg(name: str) -> int:
    from unicorn import x86_const

    return getattr(x86_const, f"UC_X86_REG_{name.upper()}")


@pytest.fixture
def machine_with_device():
    machine = Machine(16, deterministic=True)
    device = machine.board.attach(RegisterFile())
    return machine, device


WRITES_AND_READS = f"""
    mov rsi, {WINDOW:#x}
    mov byte ptr [rsi], 0x11
    mov word ptr [rsi + 2], 0x2233
    mov dword ptr [rsi + 4], 0x44556677
    mov rax, 0x8899aabbccddeeff
    mov qword ptr [rsi + 8], rax
    movzx ebx, byte ptr [rsi]
    movzx ecx, word ptr [rsi + 2]
    mov edx, dword ptr [rsi + 4]
    mov r8, qword ptr [rsi + 8]
    mov dx, 0x510
    out dx, al
    in al, dx
"""


def test_byte_word_dword_qword_accesses_reach_the_device(machine_with_device):
    machine, device = machine_with_device
    run_code(machine, WRITES_AND_READS)
    expected = bytearray(16)
    struct.pack_into("<B", expected, 0, 0x11)
    struct.pack_into("<H", expected, 2, 0x2233)
    struct.pack_into("<I", expected, 4, 0x44556677)
    struct.pack_into("<Q", expected, 8, 0x8899AABBCCDDEEFF)
    assert device.registers == expected
    read = machine.uc.reg_read
    assert (read(machine_reg("rbx")), read(machine_reg("rcx")), read(machine_reg("r8"))) == (
        0x11, 0x2233, 0x8899AABBCCDDEEFF)
    assert read(machine_reg("rax")) & 0xFF == 1                       # the port device counted one write
    # A 64-bit access reaches the device as two 32-bit ones, low half first (Q18).
    assert device.accesses == [("write", 0, 1), ("write", 2, 2), ("write", 4, 4), ("write", 8, 4), ("write", 12, 4),
                               ("read", 0, 1), ("read", 2, 2), ("read", 4, 4), ("read", 8, 4), ("read", 12, 4)]


def test_device_state_follows_snapshots(machine_with_device):
    machine, device = machine_with_device
    run_code(machine, WRITES_AND_READS)
    saved = machine.snapshot()
    run_code(machine, f"mov rsi, {WINDOW:#x}\nmov qword ptr [rsi], 0\nmov dx, 0x510\nout dx, al")
    assert device.registers[:8] == bytes(8) and device.port_writes == 2
    for _ in range(2):                                               # a snapshot restores any number of times
        machine.restore(saved)
        assert device.registers[:2] == b"\x11\x00" and device.port_writes == 1
        device.registers[0] = 0x99


def test_mmio_windows_may_not_overlap_ram_or_each_other(machine_with_device):
    machine, _ = machine_with_device

    class InRam(RegisterFile):
        mmio = (MmioWindow(0x10_0000, 0x1000),)
        ports = ()

    class Overlapping(RegisterFile):
        mmio = (MmioWindow(WINDOW, 0x2000),)
        ports = ()

    with pytest.raises(ValueError, match="overlaps guest RAM"):
        machine.board.attach(InRam())
    with pytest.raises(ValueError, match="overlaps test-register-file"):
        machine.board.attach(Overlapping())


def _values(state):
    if isinstance(state, dict):
        for value in state.values():
            yield from _values(value)
    elif isinstance(state, list):
        for value in state:
            yield from _values(value)
    else:
        yield state


def test_every_pc_device_declares_plain_state_that_round_trips():
    machine = Machine(16)
    devices = machine.board.devices
    assert {d.name for d in devices} >= {"i8259", "i8254", "cmos-rtc", "i8042", "vga", "uart16550",
                                         "isa-debug-exit", "debug-console", "post-port", "system-control-a",
                                         "piix4-pm", "bochs-vbe", "pci"}
    for device in devices:
        for name in device.saved_fields:
            assert hasattr(device, name), f"{device.name} declares {name!r} but has no such field"
        state = device.save_state()
        for value in _values(state):
            assert not callable(value), f"{device.name} saves a callable"
            assert isinstance(value, (int, bool, str, bytes, bytearray, deque, type(None))), (device.name, value)
        device.load_state(state)
        assert device.save_state() == state
    for device in devices:                                          # every declared port is on the bus
        for ports in device.ports:
            for port in range(ports.first, ports.first + ports.count):
                assert machine.board.io._devices[port] is device


def test_report_lines_name_each_device_and_show_the_power_on_pit():
    machine = Machine(16)
    lines = machine.board.describe()
    assert all(line.startswith(f"{device.name}:") for line, device in
               zip(lines, [d for d in machine.board.devices if d.saved_fields]))
    pit = next(line for line in lines if line.startswith("i8254:"))
    assert pit.startswith("i8254: ch0 mode 3 count 65536 gate 1;")      # the BIOS's 18.2 Hz setting
    pic = next(line for line in lines if line.startswith("i8259:"))
    assert "master irr=0x00 isr=0x00 imr=0xfb base=0x08" in pic         # all masked but the cascade


class Doorbell(RegisterFile):
    """Every write rings: the device asks the run loop to deliver an interrupt
    (as an APIC ICR write or an HPET comparator write does)."""

    name = "test-doorbell"

    def __init__(self, ring) -> None:
        super().__init__()
        self.ring = ring

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        super().mmio_write(offset, size, value)
        self.ring()


@pytest.mark.parametrize("deterministic", [True, False])
def test_a_device_that_stops_the_guest_inside_an_access_sees_each_access_once(deterministic):
    # Q19: a stop requested inside a guest store puts RIP back before the storing
    # instruction; if the run loop honoured it there, `add [mem], 1` would run twice.
    machine = Machine(16, deterministic=deterministic)
    # each ring makes the run loop leave emu_start and carry on, as a raised IRQ line does
    device = machine.board.attach(Doorbell(ring=lambda: machine.loop._request_service()))
    run_code(machine, f"""
        mov rsi, {WINDOW:#x}
        add dword ptr [rsi], 1
        add dword ptr [rsi], 1
        inc dword ptr [rsi + 4]
        mov rax, [rsi]
    """)
    assert [kind for kind, _, _ in device.accesses] == ["read", "write", "read", "write", "read", "write",
                                                        "read", "read"]
    assert int.from_bytes(device.registers[0:4], "little") == 2
    assert int.from_bytes(device.registers[4:8], "little") == 1


def _containers(stateful, path=""):
    """(owner, field name, container) for every container field, nested objects included."""
    for name in stateful.saved_fields:
        value = getattr(stateful, name)
        if isinstance(value, Stateful):
            yield from _containers(value, f"{path}{name}.")
        elif isinstance(value, list) and value and all(isinstance(item, Stateful) for item in value):
            for index, item in enumerate(value):
                yield from _containers(item, f"{path}{name}[{index}].")
        elif isinstance(value, (bytearray, list, deque, dict)):
            yield stateful, f"{path}{name}", value


def _scribble(container) -> None:
    if isinstance(container, dict):
        container[("scribbled",)] = 1
    elif isinstance(container, bytearray):
        if container:
            container[0] ^= 0xFF
        else:
            container.append(0x5A)
    else:
        container.append(0x5A)


def test_a_restore_undoes_in_place_changes_to_every_container_and_keeps_its_own_copy():
    """Loading copies a container only where it differs from the saved one: every
    container of every device is changed in place after a snapshot, and each restore
    (twice) must bring the saved contents back without handing out the snapshot's object."""
    machine = Machine(16)
    saved = machine.snapshot()
    expected = machine.board.save_state()
    assert sum(1 for device in machine.board.devices for _ in _containers(device)) > 10   # PCI, HPET, VGA...
    for _ in range(2):
        for _owner, _name, container in [entry for device in machine.board.devices
                                         for entry in _containers(device)]:
            _scribble(container)
        assert machine.board.save_state() != expected
        machine.restore(saved)
        assert machine.board.save_state() == expected


def _scribble_plain(stateful) -> None:
    """Change every plain int field of stateful and of its nested objects."""
    for name in stateful.saved_fields:
        value = getattr(stateful, name)
        if isinstance(value, Stateful):
            _scribble_plain(value)
        elif isinstance(value, list) and value and all(isinstance(item, Stateful) for item in value):
            for item in value:
                _scribble_plain(item)
        elif type(value) is int and not isinstance(type(stateful).__dict__.get(name), property):
            setattr(stateful, name, value ^ 0x5A)


def test_a_restore_puts_back_plain_fields_of_nested_objects_too():
    """The board loads through a flattened plan: the PICs inside the PIC pair, the PIT's
    channels and the PCI functions are loaded as well as the devices themselves."""
    machine = Machine(16)
    saved = machine.snapshot()
    expected = machine.board.save_state()
    for _ in range(2):                                                # the second restore reuses the plan
        for device in machine.board.devices:
            _scribble_plain(device)
        assert machine.board.save_state() != expected
        machine.restore(saved)
        assert machine.board.save_state() == expected


def test_a_restore_after_a_device_replaced_its_nested_objects_loads_them_all_the_same():
    """The PIT's reset makes new channel objects: the plan made for the old ones no longer
    fits, and the restore must still bring every channel back (into the new objects)."""
    machine = Machine(16)
    saved = machine.snapshot()
    expected = machine.board.save_state()
    machine.restore(saved)                                            # a plan for these channels
    old_channels = list(machine.board.pit.channels)
    machine.board.pit.reset()
    for channel in machine.board.pit.channels:
        _scribble_plain(channel)
    assert all(new is not old for new, old in zip(machine.board.pit.channels, old_channels))
    machine.restore(saved)
    assert machine.board.save_state() == expected


def test_a_restore_tells_the_uarts_c_port_path_what_the_restored_registers_mean():
    """The UART's after_load (run by the board's flattened plan) republishes to the C port
    path: with the divisor latch open, a THR write is not a plain transmit and must reach
    Python; after a restore to a snapshot taken with it closed, it is one again."""
    machine = Machine(16)
    uart = machine.board.uart
    fast = machine.loop.fast_ports.state
    uart.lcr, uart.ier, uart.mcr = 0x03, 0, 0
    uart.publish()
    saved = machine.snapshot()
    assert fast.tx_ok == 1 and fast.lsr_ok == 1
    for _ in range(2):                                   # the second restore reuses the plan
        uart.lcr = 0x83                                  # DLAB: port 0x3F8 is the divisor latch
        uart.rx_fifo.append(0x41)                        # a received byte: an LSR read has a side effect
        uart.publish()
        assert fast.tx_ok == 0 and fast.lsr_ok == 0
        machine.restore(saved)
        assert (uart.lcr, list(uart.rx_fifo)) == (0x03, [])
        assert fast.tx_ok == 1 and fast.lsr_ok == 1
