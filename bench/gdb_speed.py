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
GUEST = f"mov ecx, {LOOP_ITERATIONS}\nspin:\ndec ecx\njnz spin\ntarget:\nnop\nmov al, 0\nout 0xf4, al"
TARGET_OFFSET = 5 + 1 + 2            # mov ecx, imm32; dec ecx; jnz rel8


def image() -> str:
    code = guestkit.assemble(GUEST, guestkit.code_address())
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
    path = image()
    target = guestkit.code_address() + TARGET_OFFSET
    recorded, plain, back_steps, back_continue = [], [], [], []
    for _ in range(args.runs):
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
        recorded.append(time.perf_counter() - start)
        client.request(b"c")                       # on to the exit
        start = time.perf_counter()
        client.request(b"bc")                      # back to the breakpoint
        back_continue.append(time.perf_counter() - start)
        client.request(b"z0," + f"{target:x}".encode() + b",1")
        start = time.perf_counter()
        for _ in range(args.steps):
            client.request(b"bs")
        back_steps.append(args.steps / (time.perf_counter() - start))
        client.connection.sendall(frame(b"k"))
        thread.join()
    print(f"deterministic continue to a breakpoint 100 M instructions away: "
          f"{statistics.median(recorded) * 1e3:.1f} ms recorded by gdb, {statistics.median(plain) * 1e3:.1f} ms "
          f"without (ratio {statistics.median(recorded) / statistics.median(plain):.3f}); reverse-continue "
          f"from the exit to it: {statistics.median(back_continue) * 1e3:.1f} ms; reverse steps: "
          f"{statistics.median(back_steps):.0f}/s (medians of {args.runs})")


if __name__ == "__main__":
    main()
