"""The GDB stub's costs: single steps per second, and `continue` to a breakpoint 100 M
instructions away against the same run with no gdb (a breakpoint set from Python);
with --deterministic also what reverse execution costs: the recorded continue (it
counts instructions and takes a checkpoint every million), reverse steps per second,
and a reverse-continue from the guest's exit back to the breakpoint.

    python bench/gdb_speed.py [--steps 2000] [--runs 5] [--deterministic]
A client of our own speaks the protocol (tests/debug/test_gdb.py drives the real gdb).
"""
from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import guestkit  # noqa: E402

from unikernel_sim.debug.gdbstub import GdbServer, GdbSession  # noqa: E402
from unikernel_sim.debug.rsp import PacketReader, frame  # noqa: E402
from unikernel_sim.machine import Machine  # noqa: E402

LOOP_ITERATIONS = 50_000_000         # two instructions each: 100 M to the breakpoint
GUEST = "mov ecx, {iterations}\nspin:\ndec ecx\njnz spin\ntarget:\nnop\nmov al, 0\nout 0xf4, al"
TARGET_OFFSET = 5 + 1 + 2            # mov ecx, imm32; dec ecx; jnz rel8


def image(iterations: int = LOOP_ITERATIONS) -> str:
    code = guestkit.assemble(GUEST.format(iterations=iterations), guestkit.code_address())
    handle = tempfile.NamedTemporaryFile(suffix=".bin", delete=False)
    handle.write(guestkit.flat_image(code))
    handle.close()
    return handle.name


class Client:
    def __init__(self, port: int) -> None:
        self.connection = socket.create_connection(("127.0.0.1", port))
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as gdb does
        self.reader = PacketReader()

    def request(self, payload: bytes) -> bytes:
        self.connection.sendall(frame(payload))
        while True:
            for event in self.reader.feed(self.connection.recv(65536)):
                if event.kind == "packet":
                    self.connection.sendall(b"+")
                    return event.payload


def serve(machine: Machine) -> tuple[int, threading.Thread]:
    server = GdbServer(machine, "127.0.0.1", 0)

    def run() -> None:
        connection = server.accept()
        GdbSession(machine, connection).serve()
        connection.close()
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server.address[1], thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--deterministic", action="store_true")
    args = parser.parse_args()
    if args.deterministic:
        reverse(args)
        return
    path = image()
    target = guestkit.code_address() + TARGET_OFFSET
    with_gdb, without, rates, ranged = [], [], [], []
    spin = guestkit.code_address() + 5
    for _ in range(args.runs):
        machine = Machine(16)
        machine.load(path)
        machine.add_breakpoint(target)
        start = time.perf_counter()
        machine.run()
        without.append(time.perf_counter() - start)

        machine = Machine(16)
        machine.load(path)
        port, thread = serve(machine)
        client = Client(port)
        client.request(b"Z0," + f"{target:x}".encode() + b",1")
        start = time.perf_counter()
        client.request(b"c")
        with_gdb.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(args.steps):
            client.request(b"s")
        rates.append(args.steps / (time.perf_counter() - start))
        client.connection.sendall(frame(b"k"))
        thread.join()

        machine = Machine(16)                      # the whole loop as one range step (gdb's `next`)
        machine.load(path)
        port, thread = serve(machine)
        client = Client(port)
        client.request(b"s")                       # mov ecx
        start = time.perf_counter()
        reply = client.request(f"vCont;r{spin:x},{target:x}".encode())
        ranged.append(time.perf_counter() - start)
        assert f"10:{target.to_bytes(8, 'little').hex()}".encode() in reply, reply
        client.connection.sendall(frame(b"k"))
        thread.join()
    print(f"continue to a breakpoint 100 M instructions away: {statistics.median(with_gdb) * 1e3:.1f} ms with gdb, "
          f"{statistics.median(without) * 1e3:.1f} ms without (ratio "
          f"{statistics.median(with_gdb) / statistics.median(without):.3f}); "
          f"the loop as one range step: {statistics.median(ranged) * 1e3:.1f} ms; "
          f"single steps: {statistics.median(rates):.0f}/s (medians of {args.runs})")


def reverse(args: argparse.Namespace) -> None:
    target = guestkit.code_address() + TARGET_OFFSET
    recorded, plain = [], []
    back_continue = {1: [], 100: []}
    first_back_step = {1: [], 100: []}
    back_steps = {1: [], 100: []}
    for _ in range(args.runs):
        for millions in (100, 1):
            path = image(millions * 500_000 - 10)     # the breakpoint just before a checkpoint: the worst case
            if millions == 100:
                machine = Machine(16, deterministic=True)
                machine.load(path)
                machine.add_breakpoint(target)
                start = time.perf_counter()
                machine.run()
                plain.append(time.perf_counter() - start)

            machine = Machine(16, deterministic=True)
            machine.load(path)
            port, thread = serve(machine)
            client = Client(port)
            client.request(b"Z0," + f"{target:x}".encode() + b",1")
            start = time.perf_counter()
            client.request(b"c")                       # to the breakpoint, recorded
            if millions == 100:
                recorded.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.request(b"bs")                      # the first step back replays ~1 M instructions
            first_back_step[millions].append(time.perf_counter() - start)
            client.request(b"c")                       # on to the breakpoint again, and to the exit
            client.request(b"c")
            start = time.perf_counter()
            client.request(b"bc")                      # back to the breakpoint
            back_continue[millions].append(time.perf_counter() - start)
            client.request(b"z0," + f"{target:x}".encode() + b",1")
            start = time.perf_counter()
            for _ in range(args.steps):
                client.request(b"bs")
            back_steps[millions].append(args.steps / (time.perf_counter() - start))
            client.connection.sendall(frame(b"k"))
            thread.join()
    print(f"deterministic continue to a breakpoint 100 M instructions away: "
          f"{statistics.median(recorded) * 1e3:.1f} ms recorded by gdb, {statistics.median(plain) * 1e3:.1f} ms "
          f"without (ratio {statistics.median(recorded) / statistics.median(plain):.3f})")
    for millions in (1, 100):
        print(f"{millions} M instructions into the run: reverse-continue from the exit to the breakpoint "
              f"{statistics.median(back_continue[millions]) * 1e3:.1f} ms, first reverse-stepi (1 M instructions replayed) "
              f"{statistics.median(first_back_step[millions]) * 1e3:.2f} ms, then "
              f"{statistics.median(back_steps[millions]):.0f} reverse steps/s (medians of {args.runs})")


if __name__ == "__main__":
    main()
