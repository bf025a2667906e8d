"""A byte stream the guest writes (COM1, the 0xE9 debug console): kept whole
for the result and --expect, and handed to listeners as it arrives so that
the terminal sees output while the guest runs."""
from __future__ import annotations

from typing import BinaryIO, Callable

NEWLINE = 0x0A


class ConsoleOutput:
    def __init__(self) -> None:
        self.data = bytearray()
        self.listeners: list[Callable[[int], None]] = []

    def write(self, byte: int) -> None:
        self.data.append(byte)
        for listener in self.listeners:
            listener(byte)

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    def last_lines(self, count: int) -> list[str]:
        return self.text().splitlines()[-count:]


class StreamWriter:
    """Forward bytes to a binary stream, flushing at each newline.

    A crash cannot lose output: the run loop calls flush() whenever the guest
    stops, and every completed line is already out."""

    def __init__(self, stream: BinaryIO, *, flush_every_byte: bool = False) -> None:
        self.stream = stream
        self.flush_every_byte = flush_every_byte
        self._pending = bytearray()

    def __call__(self, byte: int) -> None:
        self._pending.append(byte)
        if byte == NEWLINE or self.flush_every_byte:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.stream.write(bytes(self._pending))
            self._pending.clear()
        self.stream.flush()
