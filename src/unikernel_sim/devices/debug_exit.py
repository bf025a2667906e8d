"""isa-debug-exit (port 0xF4) and the Bochs/QEMU debug console (port 0xE9).

A write to the debug-exit port ends the run; the value written becomes the
guest exit code (docs/booting.md explains the plain and QEMU conventions).
The debug console is a byte sink; reading it returns 0xE9, which is how
kernels detect that the port is present.
"""
from __future__ import annotations

from typing import Callable

from unikernel_sim.devices.device import Device, PortRange

DEBUG_EXIT_PORT = 0xF4
DEBUG_EXIT_WIDTH = 4
DEBUG_CONSOLE_PORT = 0xE9
DEBUG_CONSOLE_SIGNATURE = 0xE9


class DebugExit(Device):
    name = "isa-debug-exit"
    ports = (PortRange(DEBUG_EXIT_PORT, DEBUG_EXIT_WIDTH),)
    io_width = DEBUG_EXIT_WIDTH

    def __init__(self, on_exit: Callable[[int], None]) -> None:
        self.on_exit = on_exit

    def io_read(self, port: int, size: int) -> int:
        return 0

    def io_write(self, port: int, size: int, value: int) -> None:
        self.on_exit(value & ((1 << (8 * size)) - 1))


class DebugConsole(Device):
    name = "debug-console"
    ports = (PortRange(DEBUG_CONSOLE_PORT),)

    def __init__(self, output: Callable[[int], None]) -> None:
        self.output = output

    def io_read(self, port: int, size: int) -> int:
        return DEBUG_CONSOLE_SIGNATURE

    def io_write(self, port: int, size: int, value: int) -> None:
        self.output(value & 0xFF)
