"""unikernel_sim: a scriptable x86-64 PC for bare-metal and unikernel developers.

Importing the package stays cheap (no capstone, numpy or keystone): the CLI's
time to the first serial byte depends on it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from unikernel_sim.machine import Machine
    from unikernel_sim.run import BootResult, boot

__all__ = ["Machine", "BootResult", "boot", "__version__"]


def __getattr__(name: str) -> Any:
    """Import the heavy parts on first use, not at package import."""
    if name == "Machine":
        from unikernel_sim.machine import Machine

        return Machine
    if name in ("boot", "BootResult"):
        from unikernel_sim import run

        return getattr(run, name)
    raise AttributeError(name)
