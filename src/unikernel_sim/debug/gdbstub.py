"""A GDB remote stub (gdb manual, appendix "Remote Protocol"), so the real gdb can
debug a guest: `unisim boot KERNEL --gdb 127.0.0.1:1234 [--gdb-wait]`, then
`gdb kernel.elf -ex 'target remote :1234'`.

One client at a time, served on the thread that runs the guest. While the guest
runs, a reader thread watches the socket for the user's Ctrl-C (0x03) and for the
client going away; both stop the guest at its next block boundary (RunLoop.interrupt).

Packets served: qSupported, qXfer:features:read (registers.target_xml), ?, g/G,
p/P, m/M/X (virtual addresses through the guest's page tables), c/s and vCont
(c, s), Z0/Z1 (breakpoints as code hooks: nothing is written into guest memory),
Z2/Z3/Z4 (write/read/access watchpoints; setting one turns on instruction counting
so the stop lands right after the accessing instruction), D, k, qAttached, qC,
qfThreadInfo/qsThreadInfo (one thread), H, and qRcmd (`monitor`): report,
pagewalk ADDR, devices, icount, help. Stop replies carry swbreak/hwbreak/watch/
rwatch/awatch; the guest's exit, halt or power-off is a W reply, a crash a SIGSEGV
stop whose report `monitor report` prints. A malformed packet gets an empty or E
reply and the session goes on; a checksum error gets `-` (gdb resends).
"""
from __future__ import annotations

import select
import socket
import threading
from typing import TYPE_CHECKING

from unikernel_sim.debug import registers
from unikernel_sim.debug.rsp import PacketReader, frame
from unikernel_sim.stops import Stop, StopReason

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

SIGINT, SIGTRAP, SIGSEGV = 2, 5, 11
PACKET_SIZE = 0x4000
THREAD_ID = 1
ERROR_MEMORY = b"E14"            # EFAULT, as gdbserver answers for unreadable memory
ERROR_ARGUMENT = b"E22"          # EINVAL
EXITED = (StopReason.GUEST_EXIT, StopReason.HALT, StopReason.POWER_OFF, StopReason.RESET)
WATCH_KINDS = {2: ("write", "watch"), 3: ("read", "rwatch"), 4: ("access", "awatch")}
MONITOR_HELP = ("monitor commands: report (the crash report so far), pagewalk ADDR, devices, icount, "
                "snapshot NAME, restore NAME, physical on|off (memory packets use physical addresses), help\n")


class ClientGone(Exception):
    """The client closed the connection (or it broke)."""


class GdbSession:
    """One connected client. serve() returns when the client detaches (the guest may run
    on), kills the session, or disconnects; or when the guest has ended."""

    def __init__(self, machine: "Machine", connection: socket.socket, *, say=lambda line: None) -> None:
        self.machine = machine
        self.connection = connection
        self.say = say
        self.reader = PacketReader()
        self.last_stop: Stop | None = None
        self.hardware_breakpoints: set[int] = set()
        self.software_breakpoints: set[int] = set()
        self.ended = False                  # the guest exited: nothing more to run
        self.detached = False
        self.physical = False               # `monitor physical on`: m/M/X address guest RAM directly
        self.snapshots: dict = {}           # `monitor snapshot NAME` -> Snapshot
        self._history = None                # reverse execution (deterministic machines only)

    @property
    def reversible(self) -> bool:
        return self.machine.clock.deterministic

    @property
    def history(self):
        if self._history is None:
            from unikernel_sim.debug.history import History

            self._history = History(self.machine)
        return self._history

    # --- the conversation ----------------------------------------------------------
    def serve(self, stop: Stop | None = None) -> str:
        """Answer packets until the client leaves; returns "detached", "killed",
        "disconnected" or "ended"."""
        self.last_stop = stop
        try:
            while True:
                for event in self._receive():
                    if event.kind == "bad":
                        self.connection.sendall(b"-")
                        continue
                    if event.kind != "packet":
                        continue                       # acks; a Ctrl-C while stopped: nothing to stop
                    self.connection.sendall(b"+")
                    reply = self.handle(event.payload)
                    if reply is not None:
                        self._send(reply)
                    if self.detached:
                        return "detached"
                    if reply is None:
                        return "killed"
        except ClientGone:
            return "disconnected"

    def _receive(self):
        """Complete packets already buffered (typed while the guest ran), else the next read."""
        return self.reader.feed(b"") or self.reader.feed(self._recv())

    def _recv(self) -> bytes:
        try:
            data = self.connection.recv(PACKET_SIZE)
        except OSError:
            raise ClientGone() from None
        if not data:
            raise ClientGone()
        return data

    def _send(self, payload: bytes) -> None:
        try:
            self.connection.sendall(frame(payload))
        except OSError:
            raise ClientGone() from None

    # --- packets -----------------------------------------------------------------------
    def handle(self, packet: bytes) -> bytes | None:
        """The reply to one packet (b"" = unsupported); None ends the session (k)."""
        command = packet[:1]
        try:
            if packet.startswith(b"qSupported"):
                reverse = ";ReverseStep+;ReverseContinue+" if self.reversible else ""
                return (f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;swbreak+;hwbreak+;"
                        f"vContSupported+{reverse}").encode()
            if packet.startswith(b"qXfer:features:read:target.xml:"):
                return self._target_xml(packet)
            if packet == b"?":
                return self._stop_reply(self.last_stop)
            if command == b"g":
                return registers.read_all(self.machine.uc).hex().encode()
            if command == b"G":
                return b"OK" if registers.write_all(self.machine.uc, bytes.fromhex(packet[1:].decode())) \
                    else ERROR_ARGUMENT
            if command == b"p":
                number = int(packet[1:], 16)
                if number >= len(registers.REGISTERS):
                    return ERROR_ARGUMENT
                return registers.read_register(self.machine.uc, number).hex().encode()
            if command == b"P":
                number, value = packet[1:].split(b"=", 1)
                ok = registers.write_register(self.machine.uc, int(number, 16), bytes.fromhex(value.decode()))
                return b"OK" if ok else ERROR_ARGUMENT
            if command == b"m":
                return self._read_memory(packet[1:])
            if command in (b"M", b"X"):
                return self._write_memory(packet)
            if command in (b"c", b"s"):
                return self._resume(step=command == b"s")
            if packet in (b"bs", b"bc"):
                return self._reverse(step=packet == b"bs")
            if packet.startswith(b"vCont?"):
                return b"vCont;c;C;s;S;r"
            if packet.startswith(b"vCont;"):
                return self._vcont(packet[6:])
            if command in (b"Z", b"z"):
                return self._breakpoint(packet)
            if command == b"D":
                self.detached = True
                self._history = None                     # the checkpoints go with the session
                return b"OK"
            if command == b"k":
                return None
            if packet == b"qAttached":
                return b"1"
            if packet == b"qC":
                return f"QC{THREAD_ID:x}".encode()
            if packet == b"qfThreadInfo":
                return f"m{THREAD_ID:x}".encode()
            if packet == b"qsThreadInfo":
                return b"l"
            if command == b"H" or packet.startswith(b"T"):
                return b"OK"
            if packet.startswith(b"qRcmd,"):
                return self._monitor(bytes.fromhex(packet[6:].decode()).decode(errors="replace"))
        except (ValueError, IndexError):
            return ERROR_ARGUMENT
        return b""

    def _target_xml(self, packet: bytes) -> bytes:
        offset, length = (int(x, 16) for x in packet.split(b":")[-1].split(b","))
        document = registers.target_xml().encode()
        chunk = document[offset:offset + length]
        return (b"l" if offset + length >= len(document) else b"m") + chunk

    def _read_memory(self, arguments: bytes) -> bytes:
        address, length = (int(x, 16) for x in arguments.split(b","))
        length = min(length, PACKET_SIZE // 2)
        if self.physical:
            data = self.machine.ram.read(address, length) if self.machine.ram.contains(address, length) else None
        else:
            data = self.machine.read_virtual(address, length)
        return data.hex().encode() if data is not None else ERROR_MEMORY

    def _write_memory(self, packet: bytes) -> bytes:
        header, data = packet[1:].split(b":", 1)
        address, length = (int(x, 16) for x in header.split(b","))
        payload = bytes.fromhex(data.decode()) if packet[:1] == b"M" else data
        if len(payload) != length:
            return ERROR_ARGUMENT
        if self.physical:
            if not self.machine.ram.contains(address, length):
                return ERROR_MEMORY
            self.machine.ram.write(address, payload)
        elif length and not self.machine.write_virtual(address, payload):
            return ERROR_MEMORY
        self.machine.uc.ctl_remove_cache(address, address + max(length, 1))   # code may have changed
        return b"OK"

    def _breakpoint(self, packet: bytes) -> bytes:
        kind, address, length = packet[1:].split(b",")[:3]
        kind, address, length = int(kind), int(address, 16), int(length.split(b";")[0], 16)
        insert = packet[:1] == b"Z"
        if kind in (0, 1):
            table = self.software_breakpoints if kind == 0 else self.hardware_breakpoints
            if insert:
                table.add(address)
                self.machine.add_breakpoint(address)
            else:
                table.discard(address)
                if address not in self.software_breakpoints | self.hardware_breakpoints:
                    self.machine.remove_breakpoint(address)
            return b"OK"
        if kind in WATCH_KINDS:
            watch_kind = WATCH_KINDS[kind][0]
            if insert:
                self.machine.clock.start_counting(per_instruction=True)   # exact stops after the access
                self.machine.watchpoints.add(address, length, watch_kind)
            else:
                self.machine.watchpoints.remove(address, length, watch_kind)
            return b"OK"
        return b""

    def _reverse(self, *, step: bool) -> bytes:
        """bs / bc (gdb manual, "Packets"): back one instruction, or to the previous
        breakpoint or watchpoint hit; at the beginning of the recorded history the stop
        reply says replaylog:begin."""
        if not self.reversible:
            return b"E01"
        try:
            stop = self.history.reverse_step() if step else self.history.reverse_continue()
        except RuntimeError as error:                    # a replay that did not meet the recording
            self.say(f"unisim: reverse execution failed: {error}")
            return b"E05"
        self.ended = False
        if stop is None:
            self.last_stop = Stop(StopReason.STEP, "at the beginning of the recorded history")
            return self._stop_reply(self.last_stop, b"replaylog:begin;")
        self.last_stop = stop
        return self._stop_reply(stop)

    def _vcont(self, actions: bytes) -> bytes:
        """vCont;ACTION[:thread][;ACTION...]: one thread here, so the first action is
        ours. rSTART,END is range stepping: step until RIP leaves [START, END)."""
        action = actions.split(b";", 1)[0].split(b":", 1)[0]
        if action[:1] == b"r":
            start, end = (int(field, 16) for field in action[1:].split(b","))
            return self._resume(step=True, within=(start, end))
        if action[:1] not in (b"c", b"C", b"s", b"S"):
            return ERROR_ARGUMENT
        return self._resume(step=action[:1] in (b"s", b"S"))

    def _resume(self, *, step: bool, within: tuple[int, int] | None = None) -> bytes:
        self.last_stop = self._run(step=step, within=within)
        return self._stop_reply(self.last_stop)

    def _run(self, *, step: bool, within: tuple[int, int] | None = None) -> Stop:
        """Run (or step) the guest while a reader thread watches for Ctrl-C."""
        if self.ended:
            return self.last_stop
        watcher = _InterruptWatcher(self.connection, self.machine.loop.interrupt)
        watcher.start()
        try:
            if self.reversible:
                stop = self.history.forward(step=step, within=within)   # takes the checkpoints on the way
            elif within:
                stop = self.machine.step_range(*within)
            else:
                stop = self.machine.step(over_interrupts=True) if step else self.machine.run()
        finally:
            watcher.finish()
        self.last_stop = stop
        self.ended = stop.reason in EXITED
        if watcher.gone:
            raise ClientGone()                      # the stop is kept: the guest may have ended meanwhile
        self.reader.feed(watcher.leftover)
        return stop

    def _stop_reply(self, stop: Stop | None, extra: bytes = b"") -> bytes:
        if stop is not None and stop.reason in EXITED:
            code = stop.exit_value if stop.exit_value is not None else 0
            return f"W{code & 0xFF:02x}".encode()
        rip = registers.read_register(self.machine.uc, registers.RIP).hex()
        reason, signal = "", SIGTRAP
        if stop is None or stop.reason is StopReason.INTERRUPTED:
            signal = SIGINT if stop is not None else SIGTRAP
        elif stop.reason is StopReason.BREAKPOINT:
            address = self.machine.rip
            reason = "hwbreak:;" if address in self.hardware_breakpoints and \
                address not in self.software_breakpoints else "swbreak:;"
        elif stop.reason is StopReason.WATCHPOINT and self.machine.watchpoints.last_hit is not None:
            hit = self.machine.watchpoints.last_hit
            name = {"write": "watch", "read": "rwatch", "access": "awatch"}[hit.kind]
            reason = f"{name}:{hit.accessed:x};"
        elif stop.abnormal:
            signal = SIGSEGV
        return f"T{signal:02x}{registers.RIP:02x}:{rip};{reason}".encode() + extra + f"thread:{THREAD_ID:x};".encode()

    # --- monitor ---------------------------------------------------------------------------
    def _monitor(self, command: str) -> bytes:
        words = command.split()
        if not words or words[0] == "help":
            return self._output(MONITOR_HELP)
        if words[0] == "report":
            from unikernel_sim.diagnostics.report import build_report

            stop = self.last_stop or Stop(StopReason.INTERRUPTED, "stopped in the debugger")
            return self._output(build_report(self.machine, stop).text() + "\n")
        if words[0] == "pagewalk" and len(words) == 2:
            walk = self.machine.translate(int(words[1], 0))
            steps = "\n".join(f"  {step.level} [{step.index}] = {step.entry:#x}" for step in walk.steps)
            target = f"{walk.physical:#x}" if walk.physical is not None else "not mapped"
            return self._output(f"{int(words[1], 0):#x} [{walk.mode}] -> {target}\n{steps}\n".replace("\n\n", "\n"))
        if words[0] == "snapshot" and len(words) == 2:
            self.snapshots[words[1]] = self.machine.snapshot()
            return self._output(f"snapshot {words[1]!r} taken at {self.machine.describe(self.machine.rip)}\n")
        if words[0] == "restore" and len(words) == 2:
            if words[1] not in self.snapshots:
                return self._output(f"no snapshot {words[1]!r}; taken: {', '.join(self.snapshots) or 'none'}\n")
            self.machine.restore(self.snapshots[words[1]])
            self.ended = False
            return self._output(f"restored {words[1]!r}: at {self.machine.describe(self.machine.rip)} "
                                "(gdb: `maintenance flush register-cache` to re-read the registers)\n")
        if words[0] == "physical" and len(words) == 2 and words[1] in ("on", "off"):
            self.physical = words[1] == "on"
            return self._output(f"memory packets use {'physical' if self.physical else 'virtual'} addresses\n")
        if words[0] == "devices":
            return self._output("\n".join(self.machine.board.describe()) + "\n")
        if words[0] == "icount":
            count = self.machine.instructions
            return self._output(f"{count} instructions\n" if count is not None else
                                "not counting instructions (run with --deterministic, or set a watchpoint)\n")
        return self._output(f"unknown monitor command {words[0]!r}\n" + MONITOR_HELP)

    def _output(self, text: str) -> bytes:
        """Text for gdb's console: O packets, then the final OK."""
        for start in range(0, len(text), PACKET_SIZE // 4):
            self._send(b"O" + text[start:start + PACKET_SIZE // 4].encode().hex().encode())
        return b"OK"


class _InterruptWatcher:
    """While the guest runs: a 0x03 from the client interrupts it; a closed connection
    does too (and is reported). Other bytes are kept for the session."""

    def __init__(self, connection: socket.socket, interrupt) -> None:
        self.connection = connection
        self.interrupt = interrupt
        self.gone = False
        self.leftover = b""
        self._done = threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()     # finish() wakes the select at once
        self._thread = threading.Thread(target=self._watch, name="unisim-gdb", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            readable, _, _ = select.select([self.connection, self._wake_reader], [], [])
            if self._done.is_set() or self.connection not in readable:
                continue
            try:
                data = self.connection.recv(PACKET_SIZE)
            except OSError:
                data = b""
            if not data:
                self.gone = True
                self.interrupt()
                return
            if b"\x03" in data:
                self.interrupt()
                data = data.replace(b"\x03", b"")
            self.leftover += data

    def finish(self) -> None:
        self._done.set()
        self._wake_writer.send(b"\0")
        self._thread.join()
        self._wake_reader.close()
        self._wake_writer.close()


class _SecondClientRefuser:
    """While a session runs: accept whoever else connects, say so, and hang up."""

    def __init__(self, listener: socket.socket, say) -> None:
        self.listener = listener
        self.say = say
        self._wake_read, self._wake_write = socket.socketpair()
        self._thread = threading.Thread(target=self._refuse, name="unisim-gdb-refuse", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _refuse(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.listener, self._wake_read], [], [])
            except (OSError, ValueError):
                return                                  # the listener was closed
            if self._wake_read in ready:
                return
            try:
                other, peer = self.listener.accept()
            except OSError:
                return
            self.say(f"unisim: refused a second gdb client from {peer[0]}:{peer[1]} "
                     "(one is attached; detach it first)")
            other.close()

    def finish(self) -> None:
        self._wake_write.send(b"x")
        self._thread.join()
        self._wake_read.close()
        self._wake_write.close()


class GdbServer:
    """Listens on host:port for gdb; serve_one() serves one client, run_with_gdb() a whole run."""

    def __init__(self, machine: "Machine", host: str = "127.0.0.1", port: int = 1234, *, say=lambda line: None) -> None:
        self.machine = machine
        self.say = say
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.address = self.listener.getsockname()[:2]

    def accept(self) -> socket.socket:
        connection, peer = self.listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.say(f"unisim: gdb connected from {peer[0]}:{peer[1]}")
        return connection

    def serve_one(self, stop: Stop | None = None) -> tuple[str, Stop | None]:
        """Wait for a client and serve it; returns how the session ended and the last stop."""
        session, outcome = self.serve(self.accept(), stop)
        return outcome, session.last_stop

    def serve(self, connection: socket.socket, stop: Stop | None = None) -> tuple["GdbSession", str]:
        """Serve one client to its end. A second client that connects meanwhile is
        closed at once with one line on the console: one debugger drives the machine
        (gdb then says "Remote connection closed")."""
        session = GdbSession(self.machine, connection, say=self.say)
        refuser = _SecondClientRefuser(self.listener, self.say)
        refuser.start()
        try:
            return session, session.serve(stop)
        finally:
            refuser.finish()
            connection.close()

    def close(self) -> None:
        self.listener.close()


def run_with_gdb(machine: "Machine", server: GdbServer, *, wait: bool, say=lambda line: None) -> Stop:
    """The guest's whole run with a gdb stub beside it, as QEMU's -s (-S with wait): a
    client may attach at any time (the guest stops for it), detach or disconnect (the
    guest runs on), or kill the run; the guest's own end ends it. Returns the final stop."""
    connection: list[socket.socket] = []

    def accept_in_background() -> None:
        try:
            connection.append(server.accept())
        except OSError:
            return                                     # the server was closed
        machine.loop.interrupt()

    stop: Stop | None = None
    if wait:
        say(f"unisim: waiting for gdb on {server.address[0]}:{server.address[1]} "
            f"(gdb -ex 'target remote {server.address[0]}:{server.address[1]}')")
        connection.append(server.accept())
    while True:
        if connection:
            session, outcome = server.serve(connection.pop(), stop)
            stop = session.last_stop
            say(f"unisim: gdb {outcome}")
            if outcome == "killed":
                return Stop(StopReason.INTERRUPTED, "killed by the debugger", rip=machine.rip,
                            where=machine.describe(machine.rip))
            if session.ended and stop is not None:
                return stop
        acceptor = threading.Thread(target=accept_in_background, name="unisim-gdb-accept", daemon=True)
        acceptor.start()
        stop = machine.run()
        if connection and stop.reason is StopReason.INTERRUPTED:
            continue                                   # stopped for the client that just attached
        return stop
