"""Files the CLI opens for the user: one clear line (and exit code) when it cannot.

Outputs never clobber inputs: an output that names the same file as an input
(by device and inode, so links and other spellings count) is refused before
anything is read or written; outputs are opened only after every input has
been read; a report or screenshot goes to a temporary file beside its target
and is renamed over it, so a failed write leaves the old file whole.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from typing import BinaryIO

from unikernel_sim.boot.input_files import read_input_file
from unikernel_sim.errors import InputFileError, OutputError, UsageError


def _identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def refuse_clobbering(inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> None:
    """UsageError when an output (option, path) is the same file as an input
    (option, path) or as another output."""
    seen: dict[tuple[int, int], tuple[str, str]] = {}
    for option, path in inputs:
        identity = _identity(path)
        if identity is not None and _is_regular(path):
            seen.setdefault(identity, (option, path))
    for option, path in outputs:
        identity = _identity(path)
        if identity is None or not _is_regular(path):
            continue                       # a new file, a terminal, a FIFO, /dev/null: nothing to clobber
        if identity in seen:
            other_option, other_path = seen[identity]
            raise UsageError(f"{option} {path} is the same file as {other_option} {other_path}",
                             where=option, hint="write the output somewhere else")
        seen[identity] = (option, path)


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def open_output_stream(path: str, option: str) -> BinaryIO:
    """An output stream written while the guest runs. A FIFO with no reader is an
    error now rather than a process blocked forever in open()."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK, 0o666)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise OutputError("no process is reading this FIFO", where=path,
                              hint=f"start the reader first, or give {option} a regular file") from None
        raise OutputError(f"cannot write: {error.strerror}", where=path) from None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "wb")


def is_stream(path: str) -> bool:
    """A FIFO, terminal, socket or character device: read while the guest runs."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False                       # read_input_file says what is wrong with it
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def open_input_stream(path: str, what: str) -> int:
    """A non-blocking descriptor on a streamed input. A FIFO is opened read-write so
    that it neither blocks for a writer nor reads end-of-file between writers."""
    flags = os.O_NONBLOCK | (os.O_RDWR if stat.S_ISFIFO(os.stat(path).st_mode) else os.O_RDONLY)
    try:
        return os.open(path, flags)
    except OSError as error:
        raise InputFileError(f"cannot read the {what}: {error.strerror}", where=path) from None


def write_output_file(path: str, data: bytes, what: str) -> None:
    """Write a whole output (report, screenshot). A regular file (or a new one) is
    written to a temporary file beside it and renamed over it; a device or FIFO
    (/dev/stdout, a pipe) is written directly."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        if os.path.exists(path) and not _is_regular(path):
            with open(path, "wb") as handle:
                handle.write(data)
            return
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o666 & ~_umask()
        fd, temporary = tempfile.mkstemp(prefix=".unisim-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(temporary, mode)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as error:
        raise OutputError(f"cannot write the {what}: {error.strerror}", where=path) from None


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def read_optional_input(path: str | None, limit: int) -> bytes:
    if path is None:
        return b""
    return read_input_file(path, "serial input file", limit=limit)
