"""The C extension (setup.py: _vclock.c, _fast_ports.c, _irq_delivery.c, _tick_path.c...)
as a ctypes library, and the check that a Python mirror of a C struct still has the
C struct's size: a field added on one side only would otherwise make the hooks read
and write the wrong bytes, silently."""
from __future__ import annotations

import ctypes

from unikernel_sim.cpu import _vclock

library = ctypes.CDLL(_vclock.__file__)


def check_mirror(mirror: type[ctypes.Structure], c_struct: str, size_function: str) -> None:
    """ImportError naming both sides if sizeof(mirror) is not what size_function says."""
    size = getattr(library, size_function)
    size.restype = ctypes.c_uint64
    if size() != ctypes.sizeof(mirror):
        raise ImportError(f"{c_struct} ({size()} bytes) and {mirror.__name__} ({ctypes.sizeof(mirror)} bytes) "
                          "differ: rebuild the extension (pip install -e .)")
