"""The `unisim` console script and `python -m unikernel_sim` start here: the native
libraries begin loading on a helper thread before the command line's imports, which
is what lets the two overlap (native_preload.py); `cli.main` stays free of that side
effect for tests and library users who call it in-process."""
from __future__ import annotations

from unikernel_sim.native_preload import start_preloading


def main() -> int:
    """Start the preload, then run `unisim` with sys.argv; returns its exit code."""
    start_preloading()
    from unikernel_sim.cli import main as cli_main

    return cli_main()
