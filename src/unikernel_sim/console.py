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
    stops, and every completed line is already out. A stream that cannot be
    written is not a reason for a traceback: a reader that went away (a closed
    pipe: `unisim boot k | head -c 10`) only ends the forwarding, and the run
    goes on to its own end and exit code; any other error (ENOSPC, EIO) is
    recorded in ``failed`` and reported through ``on_error``, which ends the
    run with its own exit code."""

    def __init__(self, stream: BinaryIO, *, flush_every_byte: bool = False, name: str = "stdout",
                 on_error: Callable[["StreamWriter"], None] = lambda writer: None) -> None:
        self.stream = stream
        self.flush_every_byte = flush_every_byte
        self.name = name
        self.on_error = on_error
        self.failed: OSError | None = None
        self.reader_gone = False
        self._pending = bytearray()

    def __call__(self, byte: int) -> None:
        if self.reader_gone or self.failed is not None:
            return
        self._pending.append(byte)
        if byte == NEWLINE or self.flush_every_byte:
            self.flush()

    def flush(self) -> None:
        if self.reader_gone or self.failed is not None:
            return
        try:
            if self._pending:
                self.stream.write(bytes(self._pending))
                self._pending.clear()
            self.stream.flush()
        except BrokenPipeError:
            self.reader_gone = True
            self._pending.clear()
        except (OSError, ValueError) as error:          # ValueError: the stream was closed under us
            self.failed = error if isinstance(error, OSError) else OSError(str(error))
            self._pending.clear()
            self.on_error(self)

    def failure_line(self) -> str | None:
        """One line for a failed stream, or None."""
        if self.failed is None:
            return None
        reason = self.failed.strerror or str(self.failed)
        return f"cannot write {self.name}: {reason}"
