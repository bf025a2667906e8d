"""Building the bundled reference unikernel (firmware/) with the system gcc + GNU ld.

Builds are cached by make itself; a file lock serialises concurrent builds
(pytest-xdist workers, parallel CLI runs) of the same output directory.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from unikernel_sim.errors import SimError
from unikernel_sim.exit_codes import ExitCode


class FirmwareBuildError(SimError):
    exit_code = ExitCode.INTERNAL_ERROR


def firmware_dir() -> Path:
    """The firmware/ source tree of this checkout."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "firmware" / "Makefile"
        if candidate.exists():
            return candidate.parent
    raise FirmwareBuildError(
        "firmware sources not found",
        where=str(here.parent),
        hint="install unikernel_sim from a source checkout (pip install -e .)",
    )


def build_firmware(variant: str = "default", make_vars: dict[str, str] | None = None) -> Path:
    """Build (or reuse) the firmware variant; returns the path of kernel.elf.

    variant names the build directory (firmware/build/<variant>); make_vars
    are passed to make (e.g. RED_ZONE= or EXTRA_CFLAGS=...)."""
    source = firmware_dir()
    for tool in ("make", "gcc", "ld"):
        if shutil.which(tool) is None:
            raise FirmwareBuildError(f"`{tool}` is not installed", where="firmware build",
                                     hint="install gcc, binutils and make (apt-get install build-essential)")
    build = Path("build") / variant
    args = ["make", "-s", "-C", str(source), f"BUILD={build}"]
    args += [f"{key}={value}" for key, value in (make_vars or {}).items()]
    lock_path = source / "build" / f".{variant}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "MAKEFLAGS": ""})
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise FirmwareBuildError(f"make failed: {last[0]}", where=str(source),
                                 hint=f"run `{' '.join(args)}` to see the whole log")
    return source / build / "kernel.elf"
