"""Reading the files a user names, with bounds: no input may take more memory
than it could occupy in the guest, nor block the process beyond recall.

A regular file is judged by its size before a byte is read (a 4 GiB sparse
module for a 512 MiB machine is refused at once). A stream (a FIFO, a pipe,
/dev/zero) is read in chunks until end of file, and refused as soon as it
passes the limit; between chunks Ctrl-C and SIGTERM are delivered, and an
optional deadline (the run's --timeout) ends a wait for a writer that never
comes.
"""
from __future__ import annotations

import errno
import os
import select
import stat
import threading
import time

from unikernel_sim.errors import InputFileError

CHUNK = 1 << 20
MAX_KERNEL_FILE = 2 << 30        # a kernel's file may carry debug info beyond what it loads
POLL_SECONDS = 0.1


def read_input_file(path: str, what: str, *, limit: int | None = None, deadline: float | None = None) -> bytes:
    """The bytes of the file at path; InputFileError with one clear line otherwise.

    limit: the most bytes the input may have (None: MAX_KERNEL_FILE); deadline:
    time.monotonic() after which a stream that is still open is given up on."""
    limit = MAX_KERNEL_FILE if limit is None else limit
    if not path:
        raise InputFileError(f"the {what} has an empty file name", where=repr(path), hint="give a path")
    try:
        info = os.stat(path)
    except OSError as error:
        raise _stat_error(path, what, error) from None
    if stat.S_ISDIR(info.st_mode):
        raise InputFileError(f"{what} is a directory, not a file", where=path)
    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        raise InputFileError(f"{what} is a device, not a file", where=path,
                             hint="give a regular file, or a pipe (e.g. <(command)) for generated data")
    if stat.S_ISREG(info.st_mode) and info.st_size > limit:
        raise InputFileError(f"{what} has {info.st_size} bytes, more than the {limit} that can be used",
                             where=path, hint=_limit_hint(what))
    try:
        if stat.S_ISFIFO(info.st_mode):
            fd = _open_fifo(path, what, deadline)
        else:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise InputFileError(f"cannot read {what}: {error.strerror}", where=path) from None
    try:
        if stat.S_ISREG(info.st_mode):
            os.set_blocking(fd, True)
        else:
            os.set_blocking(fd, False)
        return _read_bounded(fd, path, what, limit, deadline)
    finally:
        os.close(fd)


def _open_fifo(path: str, what: str, deadline: float | None) -> int:
    """Open a FIFO for reading once a writer has opened it (a non-blocking open
    would read end-of-file at once). The blocking open runs in a helper thread so
    that the wait can end with the deadline or a signal; a wait given up on is
    released by briefly opening the FIFO for writing ourselves."""
    opened: list[int] = []
    failed: list[OSError] = []

    def open_blocking() -> None:
        try:
            opened.append(os.open(path, os.O_RDONLY))
        except OSError as error:
            failed.append(error)

    opener = threading.Thread(target=open_blocking, name="unisim-fifo-open", daemon=True)
    opener.start()
    try:
        while opener.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                raise InputFileError(f"no writer opened the {what} before the timeout", where=path,
                                     hint="start the program that writes it, or give a regular file")
            opener.join(POLL_SECONDS)
    except BaseException:
        _release(path, opener)
        if opened:
            os.close(opened[0])
        raise
    if failed:
        raise failed[0]
    return opened[0]


def _release(path: str, opener: threading.Thread) -> None:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass
    opener.join(1.0)


def _read_bounded(fd: int, path: str, what: str, limit: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = os.read(fd, min(CHUNK, limit + 1 - total))
        except BlockingIOError:
            _wait_readable(fd, path, what, deadline)
            continue
        except OSError as error:
            raise InputFileError(f"cannot read {what}: {error.strerror}", where=path) from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise InputFileError(f"{what} goes on past {limit} bytes, more than can be used",
                                 where=path, hint=_limit_hint(what))


def _wait_readable(fd: int, path: str, what: str, deadline: float | None) -> None:
    """A stream with no data yet: wait for it in short steps (signals get through)."""
    if deadline is not None and time.monotonic() >= deadline:
        raise InputFileError(f"no end of the {what} before the timeout", where=path,
                             hint="is anything writing to it?")
    select.select([fd], [], [], POLL_SECONDS)


def _stat_error(path: str, what: str, error: OSError) -> InputFileError:
    if error.errno == errno.ENOENT:
        return InputFileError(f"{what} not found", where=path, hint="check the path")
    if error.errno == errno.ELOOP:
        return InputFileError(f"{what}: too many levels of symbolic links (a symlink loop?)", where=path)
    if error.errno == errno.ENAMETOOLONG:
        return InputFileError(f"{what}: file name too long", where=path[:80] + "...")
    return InputFileError(f"cannot read {what}: {error.strerror}", where=path)


def _limit_hint(what: str) -> str:
    if what in ("module", "serial input file"):
        return "it must fit in guest RAM: give a larger --memory, or a smaller file"
    return "this does not look like a kernel image"
