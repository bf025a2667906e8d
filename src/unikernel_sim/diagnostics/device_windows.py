"""The fixed physical windows where a PC has device registers instead of RAM, and
which unisim does not emulate.

unisim's PC has QEMU `pc`'s local APIC, I/O APIC, HPET and std VGA framebuffer
(docs/platform.md). A kernel written for another machine or a fuller device set
reaches for these without asking first; an access there ends the run, and the
report should say which device the kernel was looking for rather than only
"outside RAM"."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceWindow:
    start: int
    end: int                 # exclusive
    device: str
    instead: str             # what to use on this platform


WINDOWS = (
    # PCI Express enhanced configuration access (ECAM): QEMU's q35 machine puts it here;
    # the i440FX `pc` has configuration mechanism #1 (ports 0xCF8/0xCFC) only.
    DeviceWindow(0xB0000000, 0xC0000000, "PCI Express configuration space (q35's ECAM at 0xb0000000)",
                 "use PCI configuration mechanism #1 at ports 0xcf8/0xcfc"),
    # QEMU std VGA BAR2 (PCI 00:02.0): the Bochs display registers as MMIO at offset 0x500.
    DeviceWindow(0xFEBF0000, 0xFEBF1000, "the std VGA's MMIO registers (BAR2 at 0xfebf0000)",
                 "program the Bochs display through ports 0x1ce/0x1cf"),
    # The Q35/ICH9 root complex register block (chipset configuration).
    DeviceWindow(0xFED1C000, 0xFED20000, "the ICH9 root complex register block (q35)",
                 "this is an i440FX/PIIX PC"),
    # The BIOS ROM's top copy below 4 GiB (the reset vector); no BIOS code here.
    DeviceWindow(0xFFFC0000, 0x100000000, "the BIOS ROM below 4 GiB",
                 "unisim runs no BIOS: nothing to call or read there"),
)


def device_window(address: int) -> DeviceWindow | None:
    """The device window holding physical address, or None."""
    return next((w for w in WINDOWS if w.start <= address < w.end), None)
