"""Exact profiles. The oracle for the counts is the guest's own code, counted by hand:
a stub calls main, main calls f three times, f calls g five times per call; every loop's trip count is
fixed, so each function's instructions follow from its disassembly (listed beside the
source below). The firmware's profile must account for every instruction the clock
counted, per function and per source line alike."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest
from capstone import CS_ARCH_X86, CS_MODE_32, Cs

import guestkit
from unikernel_sim.boot.symbols import Symbol, SymbolTable
from unikernel_sim.machine import Machine
from unikernel_sim.profiling import formats
from unikernel_sim.profiling.collector import Profiler
from unikernel_sim.profiling.profile import Profile
from unikernel_sim.stops import StopReason

STACK_TOP = 0x90000
CALLS_OF_F = 3
CALLS_OF_G_PER_F = 5
GUEST = f"""
start:
    mov esp, {STACK_TOP:#x}        ; 2, outside any function
    call main
main:
    mov ebx, {CALLS_OF_F}          ; 1
again:
    call f                         ; 3 per call of f
    dec ebx
    jnz again
    mov al, 0                      ; 3: the exit's block ends at the hlt
    out 0xf4, al
    hlt
f:
    mov ecx, {CALLS_OF_G_PER_F}    ; 1
floop:
    call g                         ; 3 per call of g
    dec ecx
    jnz floop
    ret                            ; 1
g:
    nop                            ; 2
    ret
"""
OUTSIDE = 2
MAIN_SELF = 1 + 3 * CALLS_OF_F + 3
F_SELF_PER_CALL = 1 + 3 * CALLS_OF_G_PER_F + 1
G_SELF_PER_CALL = 2


def loaded_guest(make_guest, deterministic: bool = True) -> tuple[Machine, dict[str, int], int]:
    """The guest loaded, the addresses of main, f and g (the targets of its three calls,
    by capstone), and the end of its code."""
    source = "\n".join(line.split(";")[0] for line in GUEST.splitlines())
    base = guestkit.code_address()
    code = guestkit.assemble(source, base)
    machine = Machine(16, deterministic=deterministic)
    machine.load(make_guest(code))
    calls = [int(i.op_str, 16) for i in Cs(CS_ARCH_X86, CS_MODE_32).disasm(code, base) if i.mnemonic == "call"]
    return machine, {"main": calls[0], "f": calls[1], "g": calls[2]}, base + len(code)


def profiled_guest(make_guest, deterministic: bool = True) -> tuple[Profile, Machine]:
    machine, labels, end = loaded_guest(make_guest, deterministic)
    ends = {"main": labels["f"], "f": labels["g"], "g": end}
    machine.symbols = SymbolTable([Symbol(name, address, ends[name] - address, "STT_FUNC")
                                   for name, address in labels.items()])
    profiler = Profiler(machine)
    start = machine.clock.instructions
    assert machine.run(timeout=10).reason is StopReason.GUEST_EXIT
    profile = profiler.result()
    assert profile.instructions == machine.clock.instructions - start
    profiler.close()
    return profile, machine


@pytest.mark.parametrize("deterministic", [True, False])
def test_counts_per_function_are_those_of_the_disassembly(make_guest, deterministic):
    profile, _ = profiled_guest(make_guest, deterministic)
    rows = {row.name: row for row in profile.per_function()}
    g_calls = CALLS_OF_F * CALLS_OF_G_PER_F
    assert (rows["main"].self, rows["main"].calls) == (MAIN_SELF, 1)
    assert (rows["f"].self, rows["f"].calls) == (F_SELF_PER_CALL * CALLS_OF_F, CALLS_OF_F)
    assert (rows["g"].self, rows["g"].calls) == (G_SELF_PER_CALL * g_calls, g_calls)
    assert rows["f"].inclusive == rows["f"].self + rows["g"].self
    assert rows["main"].inclusive + OUTSIDE == profile.counted == profile.instructions
    assert sum(row.self for row in rows.values()) == profile.instructions


def test_argument_histograms_per_call_site(make_guest):
    """g is called with ECX = 5, 4, 3, 2, 1 (f's loop counter) on each of f's three
    calls, from one call site; ESP at entry is STACK_TOP - 12 (three return addresses)."""
    from unikernel_sim.profiling.histograms import ArgumentHistograms, HistogramSpec, alignment

    machine, labels, _ = loaded_guest(make_guest)
    machine.symbols = SymbolTable([Symbol("g", labels["g"], 2, "STT_FUNC")])
    recorder = ArgumentHistograms(machine, [HistogramSpec("g", "rcx", ("rsp",))])
    assert machine.run(timeout=10).reason is StopReason.GUEST_EXIT
    sites = recorder.as_dict()["g"]
    assert len(sites) == 1
    (counters,) = sites.values()
    assert counters["size"] == {n: CALLS_OF_F for n in range(1, CALLS_OF_G_PER_F + 1)}
    assert counters["align rsp"] == {alignment(STACK_TOP - 12): CALLS_OF_F * CALLS_OF_G_PER_F}
    assert [alignment(x) for x in (0, 1, 6, 48, 4096)] == [64, 1, 2, 16, 64]


def test_folded_stacks_speedscope_and_svg_hold_the_same_counts(make_guest):
    profile, _ = profiled_guest(make_guest)
    folded = dict(line.rsplit(" ", 1) for line in formats.folded(profile).splitlines())
    assert {stack: int(count) for stack, count in folded.items()} == {
        "[outside any function]": OUTSIDE, "main": MAIN_SELF, "main;f": F_SELF_PER_CALL * CALLS_OF_F,
        "main;f;g": G_SELF_PER_CALL * CALLS_OF_F * CALLS_OF_G_PER_F}
    document = json.loads(formats.speedscope(profile, "guest"))
    names = [frame["name"] for frame in document["shared"]["frames"]]
    stacks = {";".join(names[i] for i in sample): weight
              for sample, weight in zip(document["profiles"][0]["samples"], document["profiles"][0]["weights"])}
    assert stacks == {stack: int(count) for stack, count in folded.items()}
    svg = ElementTree.fromstring(formats.svg(profile, "guest"))               # well-formed XML
    titles = [element.text for element in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert f"g: {G_SELF_PER_CALL * CALLS_OF_F * CALLS_OF_G_PER_F:,} instructions (31.25 %)" in titles      # of 96
    assert Profile.from_json(profile.to_json()).per_function() == profile.per_function()


def test_every_instruction_of_the_firmware_boot_is_in_a_function_and_on_a_line(firmware_elf):
    machine = Machine(deterministic=True)
    machine.load(firmware_elf)
    profiler = Profiler(machine)
    assert machine.run(timeout=60).reason is StopReason.GUEST_EXIT
    profile = profiler.result()
    assert profile.counted == profile.instructions and not profile.problems
    lines = profiler.per_line(profile)
    assert sum(lines.values()) == profile.instructions
    rows = {row.name: row for row in profile.per_function()}
    assert rows["kernel_main"].calls == 1 and rows["vga_putc"].calls == rows["serial_putc"].calls > 100


def test_the_command_line(tmp_path, firmware_elf):
    def unisim(*arguments):
        return subprocess.run([sys.executable, "-m", "unikernel_sim", *arguments], capture_output=True, text=True,
                              timeout=120)

    first, svg = tmp_path / "a.json", tmp_path / "a.svg"
    done = unisim("profile", firmware_elf, "--deterministic", "-o", str(first), "--svg", str(svg), "--top", "5")
    assert done.returncode == 0, done.stderr
    assert "instructions profiled, exact instruction counts" in done.stdout and "kernel_main" not in done.stderr
    ElementTree.parse(svg)
    second = tmp_path / "b.json"
    assert unisim("boot", firmware_elf, "--deterministic", "--cmdline", "job=keyboard", "--keys", "hi",
                  "--profile", str(second)).returncode == 0
    diff = unisim("profile", "--diff", str(first), str(second))
    assert diff.returncode == 0 and diff.stdout.startswith("instructions: "), diff.stderr
    database = tmp_path / "runs.sqlite"
    for _ in range(2):
        assert unisim("profile", firmware_elf, "--deterministic", "--profile-db", str(database)).returncode == 0
    listing = unisim("profile", "--show-db", str(database)).stdout
    assert listing.count("  run ") == 2 and listing.startswith("sha256:")
    same = unisim("profile", "--diff", f"{database}#1", f"{database}#2").stdout
    assert same.splitlines()[0].endswith("(+0.0%)") and len(same.splitlines()) == 2      # deterministic: no change
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    refused = unisim("profile", "--diff", str(first), str(bad))
    assert refused.returncode == 66 and refused.stderr.count("\n") == 1 and "bad.json" in refused.stderr
    assert unisim("profile").returncode == 64


def test_pytest_profiles_the_guest_calls_of_a_test_session(tmp_path):
    """pytest --unisim-profile: two tests call strlen on strings of known lengths from the
    booted snapshot; the session's profile counts strlen's two calls (and nothing of the
    boot, which came before the profiler)."""
    test = tmp_path / "test_calls.py"
    test.write_text(guestkit.TWO_STRLEN_CALLS)
    output = tmp_path / "session.json"
    done = guestkit.run_pytest(test, "--unisim-profile", str(output))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row.name: row for row in Profile.from_json(output.read_text()).per_function()}
    assert rows["strlen"].calls == 2 and "kernel_main" not in rows


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_the_flame_graph_renders_in_headless_chromium(make_guest, tmp_path):
    """What a browser draws: the bottom bar ("all") across the whole width in its fill
    colour, main's bar above it, and white above the deepest frame (g, 3 levels up)."""
    import colorsys
    import zlib

    from PIL import Image

    profile, _ = profiled_guest(make_guest)
    page = tmp_path / "flame.svg"
    page.write_text(formats.svg(profile, "guest"))
    shot = tmp_path / "flame.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    f"--window-size={formats.SVG_WIDTH},200", page.as_uri()], capture_output=True, timeout=120,
                   check=True)
    image = Image.open(shot).convert("RGB")
    height = (3 + 2) * formats.ROW_HEIGHT + 24                     # levels 0-3: all, main, f, g
    row = lambda depth: height - (depth + 1) * formats.ROW_HEIGHT + formats.ROW_HEIGHT // 2   # noqa: E731

    def fill(name: str) -> tuple[int, int, int]:
        hue = (20 + zlib.crc32(name.encode()) % 40) / 360
        return tuple(round(255 * c) for c in colorsys.hls_to_rgb(hue, 0.6, 0.8))

    def near(x: int, y: int, colour) -> bool:
        return max(abs(a - b) for a, b in zip(image.getpixel((x, y)), colour)) <= 3

    assert all(near(x, row(0), fill("all")) for x in (formats.SVG_WIDTH // 2, formats.SVG_WIDTH - 3))
    assert near(formats.SVG_WIDTH // 2, row(1), fill("main"))
    assert near(formats.SVG_WIDTH - 3, row(1), (255, 255, 255))     # main leaves the start stub's 2 of 96
    assert image.getpixel((formats.SVG_WIDTH // 2, row(4))) == (255, 255, 255)     # nothing above g
