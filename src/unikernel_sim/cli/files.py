"""Files the CLI opens for the user: one clear line (and exit code) when it cannot."""
from __future__ import annotations

from typing import BinaryIO

from unikernel_sim.boot.loader import read_input_file
from unikernel_sim.errors import UsageError


def open_output_file(path: str) -> BinaryIO:
    try:
        return open(path, "wb")
    except OSError as error:
        raise UsageError(f"cannot write: {error.strerror}", where=path) from None


def read_optional_input(path: str | None) -> bytes:
    if path is None:
        return b""
    return read_input_file(path, "serial input file")
