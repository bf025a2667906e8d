"""The Python examples in README.md and docs/ run as written.

README's example boots "kernel.elf" with a module: it runs in a folder holding
the reference firmware under that name and a small module file. docs/testing.md's
example is a pytest file using the plugin's fixtures: it runs as one, in a
separate pytest process."""
from __future__ import annotations

import re
import shutil
import zlib
from pathlib import Path

import pytest

import guestkit

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


def test_every_python_block_is_checked_here():
    documents = sorted(p.relative_to(REPO).as_posix() for p in [REPO / "README.md", *REPO.glob("docs/*.md")]
                       if python_blocks(p))
    assert documents == ["README.md", "docs/testing.md"], "a new Python example needs a test here"


def test_readme_example_runs(unisim_firmware, tmp_path, monkeypatch, capsys):
    (block,) = python_blocks(REPO / "README.md")
    shutil.copy(unisim_firmware, tmp_path / "kernel.elf")
    (tmp_path / "initrd.img").write_bytes(b"an initrd\n")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("StopReason.GUEST_EXIT 0 unikernel_sim reference firmware\n")
    assert "cmdline: console=ttyS0\n" in printed
    crc = zlib.crc32(b"an initrd\n")
    assert re.search(rf"module: start=0x[0-9a-f]+ end=0x[0-9a-f]+ crc32={crc:#010x} string=initrd\n", printed)


@pytest.mark.slow
def test_testing_md_example_runs_as_a_pytest_file(tmp_path):
    (block,) = python_blocks(REPO / "docs" / "testing.md")
    (tmp_path / "test_example.py").write_text(block)
    result = guestkit.run_pytest(tmp_path / "test_example.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
