"""unikernel_sim: a scriptable x86-64 PC for bare-metal and unikernel developers.

``Machine`` and ``BootResult`` are importable from here; the boot function is
``unikernel_sim.run.boot`` (``unikernel_sim.boot`` is the loader package, and a
subpackage always wins over a package attribute of the same name).

Importing the package stays cheap (no capstone, numpy or keystone): the CLI's
time to the first serial byte depends on it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unikernel_sim.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from unikernel_sim.machine import Machine
    from unikernel_sim.run import BootResult

__all__ = ["Machine", "BootResult", "__version__"]


def __getattr__(name: str) -> Any:
    """Import the heavy parts on first use, not at package import."""
    if name == "Machine":
        from unikernel_sim.machine import Machine

        return Machine
    if name == "BootResult":
        from unikernel_sim.run import BootResult

        return BootResult
    raise AttributeError(name)
