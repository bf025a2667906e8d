"""The start-up preload (native_preload.py) must map exactly the files the real loads
use, or it only adds work: the oracle is the kernel's own list of a process's mappings
(/proc/self/maps), read in a new process so that nothing this test run loaded counts."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from unikernel_sim.native_preload import boot_libraries, library_in_package

MAPPED_AFTER = """
import json, os, sys
from unikernel_sim.native_preload import start_preloading
thread = start_preloading()
thread.join()
def mapped():
    files = {}
    for line in open("/proc/self/maps"):
        parts = line.split()
        if len(parts) == 6 and parts[5].startswith("/"):
            files.setdefault(os.path.realpath(parts[5]), set()).add(parts[4])   # inode
    return files
preloaded = mapped()
import unicorn
from unikernel_sim.cpu.x86_lite_decoder import LiteDecoder
decoder = LiteDecoder(64)
loaded = mapped()
print(json.dumps({"preloaded": sorted(preloaded), "loaded": sorted(loaded),
                  "unicorn": os.path.realpath(unicorn.unicorn_py3.unicorn.uclib._name),
                  "capstone_by_package": decoder.uses_package}))
"""


def _run(env: dict[str, str] | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", MAPPED_AFTER], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_preloaded_files_are_the_ones_unicorn_and_the_decoder_load():
    seen = _run()
    libraries = [os.path.realpath(path) for path in boot_libraries()]
    assert len(libraries) == 2
    assert libraries[0] == seen["unicorn"]                       # what Unicorn's own loader chose
    assert not seen["capstone_by_package"]                       # the lite decoder took the C library
    for library in libraries:
        assert library in seen["preloaded"], f"{library} was not mapped by the preload"
    # Loading afterwards mapped no second copy of either (the same inode, once).
    new_files = set(seen["loaded"]) - set(seen["preloaded"])
    assert not [path for path in new_files if "libunicorn" in path or "libcapstone" in path]


def test_a_unicorn_named_by_LIBUNICORN_PATH_is_not_second_guessed(monkeypatch):
    monkeypatch.setenv("LIBUNICORN_PATH", "/nonexistent")
    names = [path.name for path in boot_libraries()]
    assert names == ["libcapstone.so"]


def test_a_missing_package_or_file_is_nothing_to_preload(tmp_path):
    assert library_in_package("no_such_package_for_unisim", tmp_path) is None
    assert library_in_package("unicorn", tmp_path / "lib" / "no-such-library.so") is None


@pytest.mark.parametrize("entry", [["-m", "unikernel_sim"], ["-c", "import sys; from unikernel_sim.launch import main; sys.argv[0] = 'unisim'; sys.exit(main())"]])
def test_the_entry_points_run_the_command_line(entry):
    done = subprocess.run([sys.executable, *entry, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("unisim ")
