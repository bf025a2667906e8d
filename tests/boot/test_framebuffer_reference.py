"""Graphics framebuffers against an independent record: what GRUB 2.06 handed
probe_fb.c (tests/data/grub_reference, RECIPE.md "Framebuffer") on QEMU 7.2's std
VGA for several requests, and the Bochs VBE registers it left behind. QEMU is not
needed here: the recordings are test data.

Multiboot2: every tag but the loader name is byte for byte GRUB's, including the
VBE controller/mode information blocks (tag 7) and the RGB framebuffer (tag 8).
Multiboot 1: the flags, the VBE blocks, the mode number and the framebuffer fields."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.boot.vbe_bios import vbe_modes
from unikernel_sim.run import boot

DATA = Path(__file__).resolve().parents[1] / "data" / "grub_reference"
RECORDING = DATA / "framebuffer_grub-2.06_qemu-7.2.txt"
VIDEOINFO = DATA / "videoinfo_grub-2.06_qemu-7.2.txt"
TAG_LOADER_NAME, TAG_VBE, TAG_FRAMEBUFFER = 2, 7, 8
MB1_INFO = struct.Struct("<IIIIIIIIIIIIIIIIIIIIHHHHQIIIBB6s")     # specification 3.3, 116 bytes
MB1_FLAGS, MB1_VBE_MODE, MB1_VBE_SEG = 0, 20, 21


def recordings() -> dict[str, list[str]]:
    """{probe file name: its serial lines}."""
    sections: dict[str, list[str]] = {}
    name = None
    for line in RECORDING.read_text().splitlines():
        if line.startswith("== "):
            name = line[3:]
            sections[name] = []
        elif name is not None:
            sections[name].append(line)
    return sections


def fields(lines: list[str]) -> dict:
    """Tags as [(type, payload)], plus the other lines by their first word."""
    out: dict = {"tags": []}
    for line in lines:
        parts = line.split()
        if parts[0] == "tag":
            out["tags"].append((int(parts[1], 16), bytes.fromhex(parts[3]) if len(parts) > 3 else b""))
        else:
            out[parts[0]] = parts[1:]
    return out


def run_probe(name: str, kind: str) -> dict:
    result = boot(str(DATA / name), cmdline="probe cmdline",
                  modules=[ModuleSpec(str(DATA / "module.txt"), "module-one")], max_instructions=20_000_000)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    return fields(result.serial.splitlines())


MULTIBOOT2_PROBES = ["probe_fb_auto.elf", "probe_fb_1024x768x32.elf", "probe_fb_800x600x16.elf",
                     "probe_fb_1000x700x32.elf", "probe_fb_80x25x0_ega.elf"]
MULTIBOOT1_PROBES = ["probe1_fb_auto.elf", "probe1_fb_640x480x24.elf", "probe1_fb_text.elf"]


@pytest.mark.parametrize("name", MULTIBOOT2_PROBES)
def test_multiboot2_framebuffer_as_grub_gave_it(name):
    grub = fields(recordings()[name])
    ours = run_probe(name, "mb2")
    assert [kind for kind, _ in ours["tags"]] == [kind for kind, _ in grub["tags"]]
    for (kind, data), (_, theirs) in zip(ours["tags"], grub["tags"]):
        if kind != TAG_LOADER_NAME:
            assert data == theirs, f"tag {kind}"
    assert ours["dispi"] == grub["dispi"]            # the Bochs VBE registers GRUB's mode set left
    assert ours["pixels"] == grub["pixels"]          # cleared video memory


@pytest.mark.parametrize("name", MULTIBOOT1_PROBES)
def test_multiboot1_video_as_grub_gave_it(name):
    grub = fields(recordings()[name])
    ours = run_probe(name, "mb1")
    g, o = (MB1_INFO.unpack(bytes.fromhex(x["info"][0])) for x in (grub, ours))
    assert o[MB1_FLAGS] == g[MB1_FLAGS]
    # mode, then (not compared) the interface segment GRUB leaves as stale stack bytes, then
    # offset/length and the framebuffer fields
    assert o[MB1_VBE_MODE] == g[MB1_VBE_MODE] and o[MB1_VBE_SEG + 1:] == g[MB1_VBE_SEG + 1:]
    control, theirs = ours["vbe-control"][0], grub["vbe-control"][0]
    if name == "probe1_fb_text.elf":
        # in text mode GRUB's copy ends after 256 bytes; the rest is whatever its heap held
        # (recorded: fragments of its translated messages)
        control, theirs = control[:512], theirs[:512]
    assert control == theirs and ours["vbe-mode"] == grub["vbe-mode"]
    assert ours["dispi"] == grub["dispi"]
    assert ours.get("pixels") == grub.get("pixels")


def test_the_mode_list_is_the_vbe_bios_list_grub_printed():
    """Second reading of the same recording, with a parser of its own: number, size, pitch."""
    listed = []
    for line in VIDEOINFO.read_text().splitlines():
        parts = line.replace("(", " ").replace(")", " ").split()
        if parts and parts[0].startswith("0x"):
            listed.append((int(parts[0], 16), int(parts[1]), int(parts[3]), int(parts[5]), int(parts[6])))
    assert [(m.number, m.width, m.height, m.bpp, m.pitch) for m in vbe_modes()] == listed
    assert len(listed) == 93
