"""Backtraces through three nested C functions, with and without frame
pointers (then from .eh_frame CFI), checked against the source itself; the
JSON report against its schema; the CLI's report outputs."""
from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from unikernel_sim.firmware import firmware_dir
from unikernel_sim.guest_call import GuestCallError
from unikernel_sim.pytest_plugin import boot_to_ready
from unikernel_sim.diagnostics.report import build_report

UNMAPPED = 0x30000000
SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "crash-report.schema.json"


def source_lines() -> dict[str, int]:
    """The line of the store in crash_level3 and of each call, read from crash_lab.c."""
    text = (firmware_dir() / "kernel_lib" / "testing" / "crash_lab.c").read_text().splitlines()
    find = lambda pattern: next(i + 1 for i, line in enumerate(text) if re.search(pattern, line))  # noqa: E731
    return {"crash_level3": find(r"\*\(volatile uint64_t \*\)"), "crash_level2": find(r"return crash_level3\("),
            "crash_level1": find(r"return crash_level2\(")}


def crash_report(booted):
    machine = booted.fresh()
    with pytest.raises(GuestCallError) as failure:
        machine.call("crash_level1", UNMAPPED, 7)
    return build_report(machine, failure.value.stop)


@pytest.mark.parametrize("build", ["frame pointers", "no frame pointers"])
def test_backtrace_through_three_nested_functions(request, build, unisim_firmware, no_frame_pointer_firmware):
    kernel = unisim_firmware if build == "frame pointers" else no_frame_pointer_firmware
    booted = boot_to_ready(kernel, cmdline="job=idle mem=512", deterministic=True, memory_mb=1024)
    frames = crash_report(booted).backtrace
    lines = source_lines()
    names = [frame.where.split("+")[0].split(" ")[0] for frame in frames[:3]]
    assert names == ["crash_level3", "crash_level2", "crash_level1"]
    for frame, name in zip(frames, names):
        assert frame.source == f"crash_lab.c:{lines[name]}", (frame, name)


def test_no_frame_pointer_build_really_has_none(no_frame_pointer_firmware):
    from capstone import CS_ARCH_X86, CS_MODE_64, Cs

    from unikernel_sim.boot.elf_image import read_elf
    from unikernel_sim.boot.symbols import SymbolTable

    data = Path(no_frame_pointer_firmware).read_bytes()
    symbols = SymbolTable.from_elf_bytes(data)
    start = symbols.get("crash_level2")
    text = next(s for s in read_elf(data, "k").segments if s.executable)
    body = text.data[start.address - text.vaddr: start.address - text.vaddr + start.size]
    mnemonics = [f"{i.mnemonic} {i.op_str}" for i in Cs(CS_ARCH_X86, CS_MODE_64).disasm(body, start.address)]
    assert "push rbp" not in mnemonics


def test_json_report_validates_and_round_trips(booted_1g):
    import jsonschema

    report = crash_report(booted_1g)
    text = report.to_json()
    data = json.loads(text)
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    expected = asdict(report)       # a page walk's steps are NamedTuples: objects in the JSON, by name
    for walk, section in zip(expected["page_walks"], report.page_walks):
        walk["steps"] = [step._asdict() for step in section.steps]
    assert data == expected
    assert set(data["page_walks"][0]["steps"][0]) == {"level", "table", "index", "entry", "present", "writable",
                                                      "user", "no_execute", "large"}
    assert data["hints"][0]["checker"] == "outside-identity-map"
    assert data["chain"][0]["error_decoded"] == "page not present, write, supervisor mode"
    assert data["page_walks"][0]["fault_level"] == "PDE"


def test_text_report_sections(booted_1g):
    report = crash_report(booted_1g)
    text = report.text()
    # The guest's #PF handler ran and panicked: the fault's registers come first, labelled,
    # then the final ones (panic's), and the #PF is listed as handled by the guest.
    for section in ("exceptions:", "registers at the #PF at crash_level3+0x14", "registers (final, where the run stopped):",
                    "code:", "backtrace:", "page walk (fault address)", "stack:", "devices:", "last serial output:"):
        assert section in text
    assert re.search(r"#PF error=0x2 .* at crash_level3\+0x14 .*\(handled by the guest\)", text)
    assert re.search(r"=> 0x[0-9a-f]+ mov qword ptr \[\w+\], \w+ +crash_level3\+", text)
    fault = report.fault_registers
    assert fault is not None and fault.rip == report.chain[-1].rip and fault.gpr["rsp"] != report.registers.gpr["rsp"]


def test_report_with_fault_registers_matches_the_schema(booted_1g):
    import jsonschema

    data = json.loads(crash_report(booted_1g).to_json())
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    assert data["fault_registers"]["name"] and data["chain"][-1]["handled_by_guest"] is True


def test_cli_report_json_and_stderr(capfd, make_guest, tmp_path):
    import jsonschema

    from unikernel_sim.cli import main

    out_file = tmp_path / "report.json"
    code = main(["boot", make_guest("ud2"), "--report-json", str(out_file)])
    _, err = capfd.readouterr()
    assert code == 70
    assert err.startswith("unisim: missing IDT: #UD at 0x101000")
    data = json.loads(out_file.read_text())
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    assert data["reason"] == "triple-fault"


def test_trace_io_and_calls(capfd, unisim_firmware):
    from unikernel_sim.cli import main

    code = main(["boot", unisim_firmware, "--deterministic", "--trace", "io", "--trace", "calls",
                 "--trace", "int"])
    _, err = capfd.readouterr()
    assert code == 0
    assert "io: out port 0x03f8 -> 0x75 (1 byte)" in err              # 'u' of the banner on COM1
    assert "call: kernel_main (" in err and "call: serial_init (" in err
    assert re.search(r"int: t=\d+ns insn=\d+ IRQ vector 0x20 rip=0x", err)


# --- a report degrades section by section, and never writes guest bytes raw ----------
def _corrupt(path, tmp_path, old: bytes, new: bytes) -> str:
    data = open(path, "rb").read()
    assert old in data
    target = tmp_path / "corrupt.elf"
    target.write_bytes(data.replace(old, new))
    return str(target)


@pytest.mark.parametrize("old,new", [(b".debug_abbrev", b".xebug_abbrev"), (b".debug_line", b".xebug_line"),
                                     (b".debug_info", b".xebug_info")])
def test_a_report_on_a_kernel_with_corrupt_dwarf_still_prints(capfd, firmware_elf, tmp_path, old, new):
    from unikernel_sim.cli import main

    corrupt = _corrupt(firmware_elf, tmp_path, old, new)
    code = main(["boot", corrupt, "--max-instructions", "5000", "--report-json", str(tmp_path / "r.json")])
    _, err = capfd.readouterr()
    assert code == 74, err
    assert "internal error" not in err and "registers:" in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["registers"]["rip"] > 0


def test_guest_bytes_in_the_report_are_escaped(make_guest):
    from unikernel_sim.diagnostics.report import printable
    from unikernel_sim.run import boot

    hostile = "\x1b]0;TITLE\x07\x1b[41mred"
    code = "mov dx, 0x3f8\n" + "".join(f"mov al, {ord(c)}\nout dx, al\n" for c in hostile + "\n") + "ud2"
    result = boot(make_guest(code))
    text = build_report(result.machine, result.stop).text()
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;TITLE\\x07\\x1b[41mred" in text
    assert printable("caf\u00e9 \udcff\x9b") == "caf\u00e9 \\xff\\x9b"


def test_corrupt_dwarf_costs_only_the_source_lines(firmware_elf, tmp_path):
    corrupt = _corrupt(firmware_elf, tmp_path, b".debug_abbrev", b".xebug_abbrev")
    machine = boot_to_ready(corrupt).machine
    with pytest.raises(GuestCallError) as caught:
        machine.call("crash_level1", 0x7000_0000_0000, 1)
    report = build_report(machine, caught.value.stop)
    assert "source lines" in report.unavailable
    assert report.chain and report.backtrace and report.disassembly
    assert "source lines: unavailable" in report.text()
