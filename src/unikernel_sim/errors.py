"""Errors the simulator reports to the user, each with the exit code the CLI uses.

Every error renders as one line: what went wrong, where, and what to do.
"""
from __future__ import annotations

from unikernel_sim.exit_codes import ExitCode


class SimError(Exception):
    """Base of the errors that end a `unisim` command with one clear line."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        """The one-line rendering: ``where: message (hint)``."""
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"; {self.hint}"
        return text


class UsageError(SimError):
    """The command line or API call was wrong (not the image)."""

    exit_code = ExitCode.USAGE


class InputFileError(SimError):
    """A file named by the user is missing, unreadable or not a regular file."""

    exit_code = ExitCode.NO_INPUT


class ImageError(SimError):
    """The kernel image (or its placement in RAM) is not bootable."""

    exit_code = ExitCode.BAD_IMAGE


class OutputError(SimError):
    """An output the user asked for (stdout, --serial-out, a report) cannot be written."""

    exit_code = ExitCode.OUTPUT_FAILED


class HostLimitError(SimError):
    """The host refused a resource the simulator needs (memory for the JIT, ...)."""

    exit_code = ExitCode.HOST_LIMIT
