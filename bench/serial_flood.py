"""Serial output throughput: a guest floods COM1 (polling LSR before every byte,
as a driver does; a newline every 64 bytes) and unisim writes it to --serial-out.

    python bench/serial_flood.py [--megabytes 100] [--runs 3] [--deterministic]
Prints MB/s (whole process wall time of `unisim boot`, median of --runs) and the
peak resident memory of the process; checks the file byte for byte.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import guestkit  # noqa: E402

LINE = 64


def flood_guest(total: int) -> bytes:
    source = guestkit.serial_flood(total // LINE, LINE)
    return guestkit.flat_image(guestkit.assemble(source, guestkit.code_address(guestkit.DEFAULT_LOAD_ADDRESS)))


def expected_output(total: int) -> bytes:
    return guestkit.serial_flood_output(total // LINE, LINE)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deterministic", action="store_true")
    args = parser.parse_args()
    total = args.megabytes * 1_000_000 // LINE * LINE
    folder = Path(tempfile.mkdtemp())
    kernel = folder / "flood.bin"
    kernel.write_bytes(flood_guest(total))
    out = folder / "serial.out"
    expected = expected_output(total)
    seconds, peaks = [], []
    for _ in range(args.runs):
        # VmHWM, not ru_maxrss: the latter also counts the parent's pages the child
        # shared between fork and exec (this script holds the expected output)
        command = [sys.executable, "-c", "import sys\nfrom unikernel_sim.cli import main\n"
                   "code = main(sys.argv[1:])\n"
                   "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
                   "print(hwm, file=sys.stderr)\nsys.exit(code)",
                   "boot", str(kernel), "--serial-out", str(out)] + (["--deterministic"] if args.deterministic else [])
        started = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seconds.append(time.perf_counter() - started)
        assert done.returncode == 0, done.stderr
        peaks.append(int(done.stderr.strip().splitlines()[-1]) // 1024)
        assert out.read_bytes() == expected, "serial output differs"
    median = statistics.median(seconds)
    print(f"| {total / 1e6:.0f} MB {'deterministic' if args.deterministic else 'fast'} | {median:.2f} s | "
          f"{total / 1e6 / median:.1f} MB/s | {max(peaks)} MiB peak RSS |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
