"""Map the native libraries a boot will load (Unicorn's, capstone's) on a helper thread
while the main thread goes on importing Python modules.

Why: the dynamic linker's work on ``libunicorn.so.2`` (24 MB, most of it relocations)
and on ``libcapstone.so`` is ~6-8 ms of every start-up here, and ``ctypes.CDLL``
holds the GIL while it runs (CPython 3.11), so nothing else can happen meanwhile.
Called as a foreign function, libc's own ``dlopen`` releases the GIL: the linker maps
and relocates both libraries on the second core while the first one executes module
bodies. When Unicorn's import and the lite decoder (cpu/x86_lite_decoder.py) later
call ``ctypes.CDLL`` on the same files, the linker finds them loaded (it matches the
file, not the name) and only counts a reference. The flags are ``ctypes.CDLL``'s
(``RTLD_NOW | RTLD_LOCAL``), so the later load asks for nothing the first did not do.

Nothing depends on it: no ``dlopen`` in libc, a library that is not where the
packages ship it, or ``LIBUNICORN_PATH`` naming another Unicorn, and the library is
simply loaded later where it is used, as before. The helper never takes the GIL except
to start and to end. A dynamic load on the main thread meanwhile (an extension module's
import) waits for the linker's lock: that is why only these two are preloaded, in the
order the boot needs them (preloading the boot's six extension modules as well made the
first serial byte ~1.5 ms later; docs/performance.md, fifth session).
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import threading
from pathlib import Path

UNICORN_LIBRARY = Path("lib") / "libunicorn.so.2"       # where the unicorn wheel ships it (Linux)
CAPSTONE_LIBRARY = Path("lib") / "libcapstone.so"       # the same for capstone (x86_lite_decoder.py)
_DLOPEN_FLAGS = os.RTLD_NOW | os.RTLD_LOCAL              # what ctypes.CDLL passes on Linux


def library_in_package(package: str, relative: Path) -> Path | None:
    """The file a wheel ships inside its package directory; None if the package or the
    file is absent. Uses importlib's spec, which imports nothing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / relative
        if path.is_file():
            return path
    return None


def boot_libraries() -> list[Path]:
    """The native libraries a plain boot loads, in the order it loads them."""
    libraries = []
    if os.environ.get("LIBUNICORN_PATH") is None:      # Unicorn's loader tries that first
        libraries.append(library_in_package("unicorn", UNICORN_LIBRARY))
    libraries.append(library_in_package("capstone", CAPSTONE_LIBRARY))
    return [path for path in libraries if path is not None]


def start_preloading() -> threading.Thread | None:
    """Start the helper thread; None when there is nothing to preload or no way to."""
    dlopen = getattr(ctypes.CDLL(None), "dlopen", None)
    libraries = boot_libraries()
    if dlopen is None or not libraries:
        return None
    dlopen.restype = ctypes.c_void_p
    dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    paths = [os.fsencode(path) for path in libraries]

    def preload() -> None:
        for path in paths:
            dlopen(path, _DLOPEN_FLAGS)     # a failure (NULL) is left to the real load to report

    thread = threading.Thread(target=preload, name="unisim-preload", daemon=True)
    thread.start()
    return thread
