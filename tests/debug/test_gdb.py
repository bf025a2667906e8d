"""The real gdb against the stub: gdb (the Debian package) in batch mode drives a
boot of the reference firmware (an x86-64 ELF with DWARF whose Multiboot entry is
32-bit code): it attaches before the first instruction, follows the kernel into 64-bit
C, reads registers, memory, a backtrace and monitor output, watches a write, steps,
and kills or detaches. The oracle is gdb's own parsing of our replies (registers
by name, symbols from the ELF)."""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from unikernel_sim.debug.rsp import PacketReader, frame
from unikernel_sim.firmware import build_firmware
from unikernel_sim.run import boot

GDB = shutil.which("gdb")
FIRMWARE_SOURCE = Path(__file__).resolve().parents[2] / "firmware"
needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb is not installed (apt-get install gdb)")


def start_stub(kernel: str, **options):
    """Boot kernel under the stub (waiting for gdb) in a thread; returns (port, thread, result box)."""
    lines, ready, box = [], threading.Event(), {}

    def say(line: str) -> None:
        lines.append(line)
        if "waiting for gdb" in line:
            ready.set()

    def run() -> None:
        box["result"] = boot(kernel, gdb=("127.0.0.1", 0, True), say=say, **options)
        ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30), lines
    port = int(re.search(r"127\.0\.0\.1:(\d+)", lines[0]).group(1))
    return port, thread, box, lines


def gdb_batch(port: int, kernel: str, *commands: str) -> str:
    arguments = [GDB, "-batch", "-nx", "-ex", "set confirm off", "-ex", "set pagination off",
                 "-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        arguments += ["-ex", command]
    completed = subprocess.run(arguments + ([kernel] if kernel else []), capture_output=True, text=True,
                               timeout=120)
    return completed.stdout + completed.stderr


@pytest.fixture(scope="module")
def kernel() -> str:
    return str(build_firmware())


def kernel_main_address(kernel: str) -> int:
    """kernel_main's address from the ELF symbol table (pyelftools)."""
    from elftools.elf.elffile import ELFFile

    with open(kernel, "rb") as stream:
        return ELFFile(stream).get_section_by_name(".symtab").get_symbol_by_name("kernel_main")[0]["st_value"]


@needs_gdb
def test_gdb_follows_the_kernel_from_its_32_bit_entry_into_64_bit_c(kernel):
    port, thread, box, _ = start_stub(kernel)
    out = gdb_batch(port, kernel, "info registers rip", "break kernel_main", "continue", "bt",
                    "info registers rip cs", "x/i $pc", "stepi", "info registers rip", "monitor devices",
                    "monitor icount", "kill")
    thread.join(60)
    assert "_start" in out                                         # stopped before the first instruction
    assert re.search(r"Breakpoint 1, kernel_main \(", out), out
    assert re.search(r"#0\s+kernel_main \(", out), out             # backtrace from DWARF...
    assert re.search(r"#1\s+0x[0-9a-f]+ in long_mode_entry \(\)", out) and "#2" not in out, out   # ...ending there
    main = kernel_main_address(kernel)                              # the ELF's symbol, not gdb's
    assert re.search(rf"rip\s+{main:#x}\s+{main:#x} <kernel_main>", out), out
    assert "push   %rbp" in out                                     # 64-bit code decoded as such
    assert re.search(rf"rip\s+{main + 1:#x}\s+{main + 1:#x} <kernel_main\+1>", out), out   # stepi: one instruction
    assert "local-apic: enabled" in out and "i8259:" in out        # monitor devices
    assert box["result"].stop.summary == "killed by the debugger"


@needs_gdb
def test_a_write_watchpoint_stops_right_after_the_writing_instruction(kernel):
    """watch a global the firmware writes during boot; gdb reports old and new value and
    the stop is right after the store (the stub counts instructions while watching)."""
    port, thread, box, _ = start_stub(kernel)
    out = gdb_batch(port, kernel, "watch -l heap_next", "continue", "info registers rip", "detach")
    thread.join(120)
    assert "Hardware watchpoint 1: -location heap_next" in out, out
    assert re.search(r"Old value = \d+\s+New value = \d+", out), out
    assert box["result"].stop.reason.value in ("guest-exit", "halt"), box["result"].stop.summary  # ran on


def test_framing_escapes_and_checksums():
    """gdb manual, "Overview": escape #, $, } and * as } then byte ^ 0x20; checksum mod 256."""
    packet = frame(b"a#b}")
    assert packet == b"$a}\x03b}]#" + f"{(sum(b'a}' + bytes([3]) + b'b}]')) & 0xFF:02x}".encode()
    reader = PacketReader()
    events = reader.feed(b"+$qC#b4\x03$g#00")
    assert [(e.kind, e.payload) for e in events] == [("ack", b""), ("packet", b"qC"), ("interrupt", b""), ("bad", b"")]


def raw_client(port: int):
    import socket

    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)       # as gdb does
    reader = PacketReader()

    def request(payload: bytes | None = None, raw: bytes | None = None) -> list:
        connection.sendall(raw if raw is not None else frame(payload))
        events = []
        while not any(e.kind == "packet" for e in events) and not any(e.kind == "nak" for e in events):
            data = connection.recv(65536)
            if not data:
                break
            events += reader.feed(data)
            for event in events:
                if event.kind == "packet":
                    connection.sendall(b"+")
        return events

    return connection, request


def packets(events) -> list[bytes]:
    return [e.payload for e in events if e.kind == "packet"]


def test_ctrl_c_stops_a_spinning_guest_and_bad_packets_get_one_answer_each(make_guest):
    """Protocol edge cases with a client of our own (gdb manual, "Interrupts",
    "Packet Acknowledgment"): a bad checksum gets '-', an unknown packet an empty
    reply, a malformed one E22; Ctrl-C while the guest spins stops it with SIGINT;
    the guest state is intact throughout (the spin counter keeps counting)."""
    spin = make_guest("xor ecx, ecx\nspin:\ninc ecx\njmp spin")
    port, thread, box, lines = start_stub(spin)
    connection, request = raw_client(port)
    assert [e.kind for e in request(raw=b"$qC#00")] == ["nak"]                 # bad checksum
    assert packets(request(b"qC")) == [b"QC1"]
    assert packets(request(b"qNoSuchThing")) == [b""]
    assert packets(request(b"p;;;")) == [b"E22"]
    assert packets(request(b"m100000,4"))[0] != b"E14"                         # the image is mapped
    connection.sendall(frame(b"c"))
    import time
    time.sleep(0.3)
    events = request(raw=b"\x03")
    reply = packets(events)[-1]
    assert reply.startswith(b"T02"), reply
    rcx = int.from_bytes(bytes.fromhex(packets(request(b"p2"))[0].decode()), "little")
    assert rcx > 1000                                                           # it did spin
    connection.sendall(frame(b"k"))
    connection.close()
    thread.join(30)
    assert box["result"].stop.summary == "killed by the debugger"


@needs_gdb
def test_ctrl_c_in_gdb_stops_a_spinning_guest(make_guest):
    """The user's Ctrl-C: SIGINT to the gdb process while `continue` runs makes gdb send
    \\x03; the guest stops with SIGINT where it spins, its counter shows it ran."""
    import signal
    import time

    port, thread, box, lines = start_stub(make_guest("xor ecx, ecx\nspin:\ninc ecx\njmp spin"))
    gdb = subprocess.Popen([GDB, "-batch", "-nx", "-ex", "set confirm off", "-ex", f"target remote 127.0.0.1:{port}",
                            "-ex", "continue", "-ex", "p $rcx", "-ex", "kill"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not any("gdb connected" in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)                                                  # `continue` is under way
    gdb.send_signal(signal.SIGINT)
    out, _ = gdb.communicate(timeout=60)
    thread.join(30)
    assert "Program received signal SIGINT, Interrupt." in out, out
    assert int(re.search(r"\$1 = (\d+)", out).group(1)) > 1000, out
    assert box["result"].stop.summary == "killed by the debugger"


def test_a_client_that_vanishes_mid_run_leaves_the_guest_running_to_its_end(make_guest):
    port, thread, box, lines = start_stub(make_guest("mov ecx, 20000000\nspin:\ndec ecx\njnz spin\nmov al, 3\nout 0xf4, al"))
    connection, request = raw_client(port)
    connection.sendall(frame(b"c"))
    connection.close()                                                           # gone while it runs
    thread.join(60)
    assert box["result"].stop.exit_value == 3 and "unisim: gdb disconnected" in lines


def test_a_second_client_is_hung_up_on_and_the_first_keeps_the_machine(make_guest):
    """One debugger drives the machine: a second connection is closed at once with one
    console line, while the first client goes on (its registers unchanged)."""
    port, thread, box, lines = start_stub(make_guest("mov ecx, 7\nmov al, 5\nout 0xf4, al"))
    connection, request = raw_client(port)
    rip = packets(request(b"p10"))[0]
    second, _ = raw_client(port)
    assert second.recv(100) == b""                                              # closed by the stub
    assert any("refused a second gdb client" in line for line in lines), lines
    assert packets(request(b"p10")) == [rip]
    assert packets(request(b"c")) == [b"W05"]
    connection.close()
    thread.join(30)
    assert box["result"].stop.exit_value == 5


@needs_gdb
def test_a_triple_fault_is_a_stop_and_monitor_report_explains_it(make_guest):
    port, thread, box, _ = start_stub(make_guest("ud2"))
    out = gdb_batch(port, "", "continue", "monitor report", "kill")
    thread.join(60)
    assert "Program received signal SIGSEGV" in out, out
    assert "triple fault" in out and "missing IDT: #UD" in out, out


@needs_gdb
def test_monitor_snapshot_and_restore_go_back_in_time(kernel):
    port, thread, box, _ = start_stub(kernel)
    out = gdb_batch(port, kernel, "break kernel_main", "continue", "monitor snapshot here", "break heap_init",
                    "continue", "monitor restore here", "maintenance flush register-cache", "info registers rip",
                    "monitor physical on", "x/2xb 0x100000", "monitor physical off", "kill")
    thread.join(60)
    assert "Breakpoint 2, heap_init" in out and "restored 'here': at kernel_main" in out, out
    after_heap_init = out.split("Breakpoint 2, heap_init")[1]
    main = kernel_main_address(kernel)
    assert re.search(rf"rip\s+{main:#x}\s+{main:#x} <kernel_main>", after_heap_init), out    # back where it was
    assert "memory packets use physical addresses" in out


def test_a_failed_guest_test_waits_for_gdb_with_the_machine_where_it_stopped(tmp_path):
    """pytest --unisim-gdb-on-failure: the failing test's machine is served; a client
    reads its registers (the failed call's state) and detaches; the run goes on."""
    import os
    import socket
    import sys

    test = tmp_path / "test_fails.py"
    test.write_text("def test_strlen_is_wrong(unisim_machine):\n"
                    "    assert unisim_machine.call('strlen', 0x100000) == 12345\n")
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test),
                                "--unisim-gdb-on-failure", "127.0.0.1:0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=tmp_path, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    line = process.stderr.readline()
    while "waits for gdb" not in line:
        assert line, "pytest ended without waiting for gdb"
        line = process.stderr.readline()
    port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
    connection, request = raw_client(port)
    rip = bytes.fromhex(packets(request(b"p10"))[0].decode())
    assert len(rip) == 8
    assert packets(request(b"D")) == [b"OK"]
    connection.close()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "1 failed" in out, (out, err)
    assert "gdb detached; the test run goes on" in err


@needs_gdb
def test_reverse_execution_finds_the_write_that_changed_a_variable(kernel):
    """--deterministic, the classic use: at the end of the boot, watch a global and
    reverse-continue to the instruction that last wrote it (gdb shows the value going
    back), reverse-stepi once more, then forward again to the same write."""
    port, thread, box, _ = start_stub(kernel, deterministic=True)
    out = gdb_batch(port, kernel, "break debug_exit", "continue", "p heap_next", "watch -l heap_next",
                    "reverse-continue", "x/i $pc", "p heap_next", "reverse-stepi", "stepi", "stepi", "p heap_next",
                    "kill")
    thread.join(60)
    final = re.search(r"\$1 = (\d+)", out).group(1)
    assert re.search(rf"Old value = {final}\s+New value = (\d+)", out), out          # the write, undone
    assert re.search(r"=> 0x[0-9a-f]+ <\w+\+\d+>:\s+mov\s+%\w+,0x[0-9a-f]+\(%rip\)\s+# 0x[0-9a-f]+ <heap_next>", out), out
    assert re.search(rf"\$3 = {final}\b", out), out                                  # and done again


@needs_gdb
def test_reverse_finish_returns_to_the_call_and_history_has_a_beginning(kernel):
    """gdb's own reverse-finish (built from bs/bc and a breakpoint at the caller) lands on
    the `call kernel_main` the ELF's symbols place in long_mode_entry; stepping back past
    where gdb attached is refused with gdb's end-of-history message, not an error."""
    port, thread, box, _ = start_stub(kernel, deterministic=True)
    out = gdb_batch(port, kernel, "stepi", "reverse-stepi", "reverse-stepi", "break kernel_main", "continue",
                    "delete", "next", "next", "reverse-finish", "x/i $pc", "kill")
    thread.join(60)
    assert "No more reverse-execution history." in out, out
    assert re.search(r"=> 0x[0-9a-f]+ <long_mode_entry\+\d+>:\s+call\s+0x[0-9a-f]+ <kernel_main>", out), out


@needs_gdb
def test_reverse_execution_is_refused_without_deterministic_mode(kernel):
    port, thread, box, _ = start_stub(kernel)
    out = gdb_batch(port, kernel, "stepi", "reverse-stepi", "kill")
    thread.join(60)
    assert "Target remote does not support this command." in out, out


@needs_gdb
def test_next_range_steps_over_the_tick_wait_and_a_breakpoint_in_the_timer_handler(kernel):
    """gdb range-steps `next` (vCont;r: one request per line, not one per instruction).
    A `next` over the firmware's tick wait (an inlined sti; hlt) waits for an interrupt
    and runs its handler whole inside the step, with no stop in the handler: the PIT's
    (one tick) or the keyboard controller's reply to the firmware's set-up (no tick; which
    one comes first depends on how long the firmware took to get there). The next `next` (gdb now sees the inlined report_timer's call site) runs the
    rest of the wait loop: gdb arrives at the following line with TICKS_TO_WAIT ticks
    (the constant read from kernel.c). Then a breakpoint in the timer handler stops there
    with the tick not yet counted, and `finish` leaves it with the tick counted."""
    ticks_to_wait = int(re.search(r"#define TICKS_TO_WAIT\s+(\d+)",
                                  (FIRMWARE_SOURCE / "kernel.c").read_text()).group(1))
    port, thread, box, _ = start_stub(kernel, deterministic=True)
    out = gdb_batch(port, kernel, "break report_timer", "continue", "delete",
                    "p ticks", "set debug remote 1", "next", "set debug remote 0", "p ticks", "next", "p ticks",
                    "break pit_tick", "continue", "p ticks", "finish", "p ticks", "kill")
    thread.join(60)
    values = [int(value) for value in re.findall(r"^\$\d+ = (\d+)", out, re.MULTILINE)]
    assert values[0] == 0 and values[1] in (0, 1), out
    assert values[2:] == [ticks_to_wait, ticks_to_wait, ticks_to_wait + 1], out
    assert re.search(r"Sending packet: \$vCont;r[0-9a-f]+,[0-9a-f]+", out), out
    assert re.search(r"Breakpoint 2, pit_tick \(", out), out
