"""The CLI's two terminal streams, written so that neither can crash the run.

stdout carries the guest's output (StreamWriter: a closed pipe ends the
forwarding, other errors end the run with exit code 82). stderr carries our own
lines; when even stderr cannot be written there is nowhere left to say so, and
the exit code still tells what happened.
"""
from __future__ import annotations

import sys
from typing import Callable

from unikernel_sim.console import StreamWriter
from unikernel_sim.errors import OutputError


def say(line: str) -> None:
    """One line on stderr; silently dropped if stderr is closed or full."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def stdout_writer(on_error: Callable[[StreamWriter], None] = lambda writer: None) -> StreamWriter:
    """A StreamWriter on stdout; OutputError if the process has no stdout (`>&-`)."""
    stream = sys.stdout
    if stream is None:
        raise OutputError("standard output is closed", hint="redirect it to a file or to /dev/null instead")
    binary = getattr(stream, "buffer", None) or _TextSink(stream)      # a StringIO in an embedding program
    return StreamWriter(binary, flush_every_byte=stream.isatty(), name="standard output", on_error=on_error)


class _TextSink:
    """Bytes onto a text-only stream, decoded the way the guest most likely meant them."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, data: bytes) -> int:
        self.stream.write(data.decode("utf-8", errors="replace"))
        return len(data)

    def flush(self) -> None:
        self.stream.flush()
