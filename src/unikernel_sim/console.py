"""A byte stream the guest writes (COM1, the 0xE9 debug console): kept whole
for the result and --expect, and handed to listeners as it arrives so that
the terminal sees output while the guest runs."""
from __future__ import annotations

import time
from typing import BinaryIO, Callable

NEWLINE = 0x0A
TAIL_BYTES = 64 * 1024
CHUNK_FLUSH_BYTES = 64 * 1024     # a flood is written in blocks this large
LINE_FLUSH_SECONDS = 0.02          # and a completed line reaches the host within this


class ConsoleOutput:
    """keep: how many of the latest bytes ``data`` holds (None: all). The CLI keeps
    a tail, so that a 100 MB flood costs no 100 MB; the Python API keeps all."""

    def __init__(self, keep: int | None = None) -> None:
        self.data = bytearray()
        self.keep = keep
        self.total = 0                       # bytes written, kept or not
        self.listeners: list[Callable[[int], None]] = []
        self.shown = 0                       # bytes already handed to listeners (see rewind)

    def rewind(self, total: int, kept: int) -> None:
        """Back to a snapshot taken when total bytes had been written (kept of them in
        data). What comes again up to the furthest point shown is not handed to the
        listeners a second time: a terminal does not print a replayed past twice."""
        self.shown = max(self.shown, self.total)
        del self.data[kept:]
        self.total = total

    def write(self, byte: int) -> None:
        self.data.append(byte)
        self._account(1)
        if self.total <= self.shown:
            return                           # a replay of what was shown before a rewind
        for listener in self.listeners:
            listener(byte)

    def write_bytes(self, chunk: bytes) -> None:
        """Many bytes at once (the C port path's buffer): listeners with a
        write_chunk method get the chunk, the others each byte."""
        self.data += chunk
        self._account(len(chunk))
        replayed = len(chunk) - (self.total - self.shown) if self.total > self.shown else len(chunk)
        if replayed > 0:
            chunk = chunk[replayed:]
        if not chunk:
            return
        for listener in self.listeners:
            write_chunk = getattr(listener, "write_chunk", None)
            if write_chunk is not None:
                write_chunk(chunk)
            else:
                for byte in chunk:
                    listener(byte)

    def _account(self, count: int) -> None:
        """Count what arrived; beyond twice the tail kept, trim to the tail. A new object:
        `del data[:n]` only moves a bytearray's start, keeping the memory."""
        self.total += count
        if self.keep is not None and len(self.data) > 2 * self.keep:
            self.data = self.data[-self.keep:]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    def last_lines(self, count: int) -> list[str]:
        """The last count lines, decoding only the tail (a 100 MB flood is not decoded again)."""
        tail = bytes(self.data[-TAIL_BYTES:])
        return tail.decode("utf-8", errors="replace").splitlines()[-count:]


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
        self._last_flush = 0.0

    def __call__(self, byte: int) -> None:
        if self.reader_gone or self.failed is not None:
            return
        self._pending.append(byte)
        if byte == NEWLINE or self.flush_every_byte:
            self.flush()

    def write_chunk(self, chunk: bytes) -> None:
        if self.reader_gone or self.failed is not None:
            return
        self._pending += chunk
        if self.flush_every_byte or len(self._pending) >= CHUNK_FLUSH_BYTES or (
                NEWLINE in chunk and self._interactive_due()):
            self.flush()

    def _interactive_due(self) -> bool:
        return time.monotonic() - self._last_flush >= LINE_FLUSH_SECONDS

    def flush(self) -> None:
        self._last_flush = time.monotonic()
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
