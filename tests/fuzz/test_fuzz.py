"""Bounded fuzzing in CI (a few seconds): mutated kernel images through the
loader, arbitrary strings through the boot information, and arbitrary machine
states through the crash report. The property is always the same: a clear
SimError or a correct result, never another exception. bench/fuzz.py runs the
same generators for longer and counts failures by class (docs/robustness.md).
"""
from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "boot"))

from test_boot_info_layout import parse_mbi  # noqa: E402  (the independent parser)

from unikernel_sim.boot.boot_info import ModuleInfo, build_boot_info  # noqa: E402
from unikernel_sim.boot.layout import memory_map  # noqa: E402
from unikernel_sim.diagnostics.report import build_report  # noqa: E402
from unikernel_sim.errors import SimError  # noqa: E402
from unikernel_sim.machine import Machine  # noqa: E402
from unikernel_sim.stops import Stop, StopReason  # noqa: E402

import guestkit  # noqa: E402

EXAMPLES = int(os.environ.get("UNISIM_FUZZ_EXAMPLES", "60"))    # bench/fuzz.py raises it
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
ELF_HEADER_FIELDS_64 = {"e_entry": (24, "<Q"), "e_phoff": (32, "<Q"), "e_shoff": (40, "<Q"),
                        "e_phentsize": (54, "<H"), "e_phnum": (56, "<H"), "e_shentsize": (58, "<H"),
                        "e_shnum": (60, "<H"), "e_shstrndx": (62, "<H")}
EXTREMES = [0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 63, (1 << 64) - 1]


def load_bytes(tmp_path: Path, data: bytes) -> None:
    """Load data as a kernel into a small machine: returns, or raises SimError."""
    path = tmp_path / "fuzzed.bin"
    path.write_bytes(data)
    Machine(16).load(str(path))


@FAST
@given(data=st.data())
def test_mutated_elf_images_load_or_say_why(firmware_elf, tmp_path, data):
    image = bytearray(Path(firmware_elf).read_bytes())
    field = data.draw(st.sampled_from(sorted(ELF_HEADER_FIELDS_64)), label="field")
    offset, layout = ELF_HEADER_FIELDS_64[field]
    bits = struct.calcsize(layout) * 8
    value = data.draw(st.sampled_from([v & ((1 << bits) - 1) for v in EXTREMES]) | st.integers(0, (1 << bits) - 1),
                      label="value")
    struct.pack_into(layout, image, offset, value)
    flips = data.draw(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=4), label="flips")
    for position, byte in flips:
        image[position] = byte
    cut = data.draw(st.none() | st.integers(0, len(image)), label="truncate")
    try:
        load_bytes(tmp_path, bytes(image[:cut]))
    except SimError as error:
        assert "\n" not in error.line() and error.line()


@FAST
@given(header=st.binary(min_size=0, max_size=256), padding=st.integers(0, 64))
def test_arbitrary_multiboot2_headers_load_or_say_why(tmp_path, header, padding):
    magic = struct.pack("<IIII", 0xE85250D6, 0, 16 + len(header), (-(0xE85250D6 + 16 + len(header))) & 0xFFFFFFFF)
    try:
        load_bytes(tmp_path, b"\0" * (8 * padding) + magic + header + b"\xf4" * 16)
    except SimError as error:
        assert "\n" not in error.line()


@FAST
@given(code=st.binary(min_size=1, max_size=64))
def test_flat_images_with_any_code_load(tmp_path, code):
    load_bytes(tmp_path, guestkit.flat_image(code))


@FAST
@given(cmdline=st.binary(max_size=200).filter(lambda b: b"\0" not in b),
       module_lines=st.lists(st.binary(max_size=40).filter(lambda b: b"\0" not in b), max_size=4))
def test_boot_information_carries_any_bytes_exactly(cmdline, module_lines):
    modules = [ModuleInfo(0x200000 + i * 0x1000, 0x200000 + i * 0x1000 + 10, os.fsdecode(line))
               for i, line in enumerate(module_lines)]
    blob = build_boot_info(cmdline=os.fsdecode(cmdline), loader_name="fuzz", modules=modules,
                           memory=memory_map(16 << 20), ram_size=16 << 20, load_base=0x100000, elf_sections=None)
    parsed = parse_mbi(lambda address, length: blob[address:address + length], 0)
    assert parsed["tags"][1][0][8:8 + len(cmdline) + 1] == cmdline + b"\0"
    for tag, line in zip(parsed["tags"].get(3, []), module_lines):
        assert tag[16:16 + len(line) + 1] == line + b"\0"


REGISTERS = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "cr3", "cr2"]


@FAST
@given(values=st.fixed_dictionaries({name: st.sampled_from(EXTREMES) | st.integers(0, (1 << 64) - 1)
                                     for name in REGISTERS}),
       long_mode=st.booleans(), memory=st.binary(max_size=512), serial=st.binary(max_size=200))
def test_the_report_survives_any_machine_state(values, long_mode, memory, serial):
    from unicorn import x86_const as x86

    machine = Machine(16)
    machine.ram.write(0x1000, memory)
    for byte in serial:
        machine.serial.write(byte)
    for name, value in values.items():
        if name == "cr3":
            value &= 0xFFFF_FFFF_FFFF_F000 & ((1 << 52) - 1)
        try:
            machine.uc.reg_write(getattr(x86, f"UC_X86_REG_{name.upper()}"), value)
        except Exception:  # noqa: BLE001 - Unicorn refuses some values; the state is then whatever it kept
            pass
    if long_mode:
        machine.uc.reg_write(x86.UC_X86_REG_CR4, 0x20)
        machine.uc.msr_write(0xC0000080, 0x500)
        machine.uc.reg_write(x86.UC_X86_REG_CR0, 0x80000011)
    stop = Stop(StopReason.EXCEPTION, "fuzzed", rip=values["rip"], where="?", fault_address=values["cr2"])
    report = build_report(machine, stop)
    text = report.text()
    assert text and all(ch.isprintable() or ch == "\n" for ch in text)
    report.to_json()


@FAST
@given(flags=st.sampled_from([0, 1, 2, 3, 1 << 16, (1 << 16) | 3, 1 << 15, 0xFFFFFFFF]) | st.integers(0, 0xFFFFFFFF),
       fields=st.lists(st.sampled_from(EXTREMES) | st.integers(0, 0xFFFFFFFF), min_size=5, max_size=5),
       padding=st.integers(0, 64))
def test_arbitrary_multiboot1_headers_load_or_say_why(tmp_path, flags, fields, padding):
    magic = 0x1BADB002
    header = struct.pack("<III", magic, flags, (-(magic + flags)) & 0xFFFFFFFF)
    header += struct.pack("<5I", *(value & 0xFFFFFFFF for value in fields))
    try:
        load_bytes(tmp_path, b"\0" * (4 * padding) + header + b"\xf4" * 64)
    except SimError as error:
        assert "\n" not in error.line()
