"""Port 0x80, the POST diagnostic port. Kernels write to it as a short I/O
delay (Linux's io_delay, OSDev's io_wait); a PC decodes it, so it is not an
"unknown port". The last value written is kept, as a POST card shows it."""
from __future__ import annotations

from unikernel_sim.devices.device import Device, PortRange

POST_PORT = 0x80


class PostPort(Device):
    name = "post-port"
    ports = (PortRange(POST_PORT),)
    saved_fields = ("last_code",)

    def __init__(self) -> None:
        self.last_code: int | None = None

    def io_read(self, port: int, size: int) -> int:
        return 0xFF if self.last_code is None else self.last_code

    def io_write(self, port: int, size: int, value: int) -> None:
        self.last_code = value & 0xFF
