"""The run loop: execute the guest in slices and explain why it stopped.

One slice, top to bottom (RunLoop.slice):
  1. bring the devices up to the current virtual time and, if the CPU takes
     interrupts (IF=1, no STI shadow) and the PIC has a request, deliver it
     through the guest IDT;
  2. arm the next stop: the instruction budget and the next device event
     (deterministic mode: an exact instruction count in the C clock hook; fast
     mode: a host-clock deadline on the timer thread) - or none, and the guest
     runs free; the timer ticks (PIT or HPET timer 0, local APIC timer) are left to C
     when they take the plain path (cpu/tick_path.py: delivered without stopping the guest,
     in deterministic mode at the instructions where this loop would deliver them);
  3. emu_start from RIP until something stops it;
  4. classify the stop: a hook's verdict (debug exit, triple fault, --expect,
     a breakpoint), a returned guest call, a Unicorn error (memory outside
     RAM), a fault one of our hooks raised, Ctrl-C, the wall-clock timeout, the
     budget, a device deadline, or a plain return, which Unicorn also makes
     after `hlt` (Q5), recognised by the 0xF4 byte before RIP;
  5. end the run with a Stop, or go round again.
Hooks cover only I/O instructions, exceptions, invalid opcodes, unmapped
memory, RDTSC and narrow code ranges: nothing runs in Python per instruction.
"""
from __future__ import annotations

import math
import signal
from typing import TYPE_CHECKING, Callable

from unicorn import (
    UC_ERR_FETCH_UNMAPPED, UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_HOOK_MEM_UNMAPPED,
    UC_MEM_FETCH_UNMAPPED, UC_MEM_WRITE_UNMAPPED, UcError,
)
from unicorn import x86_const as x86

from unikernel_sim.arch import EFER_LMA, MSR, OPCODE_HLT, RFLAGS_IF
from unikernel_sim.cpu.fast_ports import FastPorts
from unikernel_sim.cpu.host_timer import OUTPUT, TIMEOUT
from unikernel_sim.cpu.hpet_counter import HpetCounterPath
from unikernel_sim.cpu.hlt_sites import HltSites
from unikernel_sim.cpu.tick_path import TickPath
from unikernel_sim.cpu.unicorn_compat import RUN_UNTIL_NEVER, exits_only
from unikernel_sim.cpu.vclock import host_ns
from unikernel_sim.errors import UsageError
from unikernel_sim.limits import MAX_INSTRUCTIONS, MAX_TIMEOUT_SECONDS
from unikernel_sim.devices.i8254 import PORT_B, REFRESH_PERIOD_NS
from unikernel_sim.devices.uart16550 import LSR as UART_LSR
from unikernel_sim.run_control import InterruptWatch
from unikernel_sim.stops import Stop, StopReason

if TYPE_CHECKING:
    from unikernel_sim.cpu.return_watch import ReturnWatch
    from unikernel_sim.machine import Machine
    from unikernel_sim.serial_stream import SerialInputStream     # only with a streamed --serial-in

SIGNAL_STOPS = {
    signal.SIGINT: (StopReason.INTERRUPTED, "interrupted (Ctrl-C)"),
    signal.SIGTERM: (StopReason.TERMINATED, "terminated (SIGTERM)"),
    signal.SIGHUP: (StopReason.HANGUP, "hung up (SIGHUP)"),
}
MAX_UNEXPLAINED_RETURNS = 10_000      # emu_start returns in a row with no reason at all
PENDING_POLL_NS = 20_000              # IRQ pending but IF=0: look again at the next multiple of this
"""Deterministic mode stops there (a grid of virtual time: where interrupts land must not
depend on the host); fast mode asks the block hook at that period instead (HostTimer.
poll_interrupts), which stops the guest only once the CPU would take the request."""
STREAM_WAIT_SECONDS = 0.05           # hlt with streamed serial input: look again this often
IO_ACCESS_NS = 1_000                  # deterministic mode: virtual time per port access
RED_ZONE_FRAME_REACH = 64             # a frame pushed on the interrupted stack lies within this

GO_ON = None                          # slice(): carry on with the next slice
UNEXPLAINED = object()                # slice(): emu_start returned and nothing says why


class RunLoop:
    def __init__(self, machine: "Machine") -> None:
        self.machine = machine
        self.uc = machine.uc
        self.clock = machine.clock
        self.board = machine.board
        self.interrupts = machine.interrupts
        self.host_timer = machine.host_timer
        self.strict_io = False
        self.on_stop: list[Callable[[], None]] = []     # e.g. flush the terminal
        self.budget_end: int | None = None
        self.timeout: float | None = None
        self._pending: Stop | None = None
        self._service_requested = False
        self._in_port_access = False               # a device is serving an IN or OUT (Q25)
        self._host_timed_stop = False
        self._running = False                      # inside emu_start (device code may run in hooks)
        self._stepping = False                     # this run executes one instruction
        self._step_from: int | None = None         # where the stepped instruction starts
        self.step_over_interrupts = False          # a debugger's step: handlers run whole (return_watch.py)
        self._interrupt_return: ReturnWatch | None = None   # the handler a step is running through
        self._step_after_return = False            # then execute the stepped instruction
        self._hlt_step = False                     # a step of hlt ends when the waking handler returns
        self._interrupt_requested = False          # interrupt() from another thread
        self.serial_stream: SerialInputStream | None = None    # --serial-in from a FIFO or pipe
        self.key_scripts: list = []                              # --keys with {wait:TEXT} steps
        self._unmapped: tuple[int, int, int] | None = None
        self._slices_in_run = 0                    # the tick is offered to C from the second on
        uc = self.uc
        exits_only(uc)                             # no CR2 clobbered at the end of a run (Q1)
        uart = self.board.uart
        self.fast_ports = FastPorts(uc, self.clock, thr_port=uart.base, lsr_port=uart.base + UART_LSR,
                                    io_ns=IO_ACCESS_NS, port_b=PORT_B, refresh_period_ns=REFRESH_PERIOD_NS,
                                    slow_in=self._on_in, slow_out=self._on_out,
                                    on_bytes=machine.serial.write_bytes, on_error=self._leave_emu_start)
        uart.publish()
        self.tick_path = TickPath(self.clock, self.interrupts.fast, self.board)
        self.clock.follow_host_timer(self.host_timer.address)
        self.hlt_sites = HltSites(self.clock, uc)
        self.tick_path.on_delivered = self._count_c_ticks
        self.tick_path.red_zone_look = self._red_zone_look
        self.tick_path.serve_apic_page(self.fast_ports.guarded)
        self.hpet_counter = HpetCounterPath(self.clock, self.board.mmio, self.fast_ports.guarded)
        self.board.hpet.counter_view = self.hpet_counter.publish
        self.board.hpet.publish()
        self.board.mmio.before_access = self._take_back_tick
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        self.board.io.on_unknown = self._on_unknown_port

    # --- the loop ------------------------------------------------------------------
    def run(self, *, max_instructions: int | None = None, timeout: float | None = None,
            catch_sigint: bool = False, step: bool = False) -> Stop:
        """Run the guest until it stops; returns why. step: execute one instruction
        (an interrupt that is due is delivered first, as on hardware, so the step may
        land in its handler). A breakpoint at the RIP the run starts from is passed
        over, not hit again. UsageError for a budget or timeout out of range (limits.py)."""
        _check_limits(max_instructions, timeout)
        self.machine.ram.snapshots.ensure_handler()     # Python's faulthandler may have gone in front
        self._stepping = step
        self.machine.breakpoints.resume()
        if self.hlt_sites:
            self.hlt_sites.avoid(self.machine.breakpoints.addresses)
        if max_instructions is not None:
            self.clock.start_counting()
            self.budget_end = self.clock.instructions + max_instructions
        else:
            self.budget_end = None
        # The deadlines of the run before are not disarmed at its end (two calls into C a
        # guest call saved): one may fire between runs, and until the first slice re-arms
        # EVENT, in this run's first slice too. Such a stop finds nothing due and the loop
        # goes on, but a step would end having executed nothing: EVENT goes first then.
        if step:
            self.host_timer.arm(None)
        self.timeout = timeout
        self.host_timer.start_run(None if timeout is None else host_ns() + int(timeout * 1e9),
                                  self.fast_ports.length_address)
        self.clock.cancel_async_stop()                   # what a deadline of the run before asked
        if self._interrupt_requested:                    # but a debugger's interrupt since: at the first block
            self.clock.request_async_stop()
        self.clock.resume()
        unexplained = 0
        self._slices_in_run = 0
        # Deterministic mode: a run's start is a boundary the caller chose (a budget, a
        # breakpoint, a debugger's step, a guest call), not one the guest caused. An IRQ
        # waiting there is left to the next point the guest's own execution makes (a
        # device event, an I/O access, the pending-poll grid), so that where interrupts
        # land does not depend on how a run was cut into runs: reverse execution replays
        # from checkpoints and must meet the interrupts where the first run met them.
        self._host_timed_stop = self.clock.deterministic
        try:
            with InterruptWatch(self.clock.request_async_stop, enabled=catch_sigint) as watch:
                while True:
                    stop = self.slice(watch)
                    if isinstance(stop, Stop):
                        return self._finish(stop)
                    unexplained = unexplained + 1 if stop is UNEXPLAINED else 0
                    if unexplained > MAX_UNEXPLAINED_RETURNS:
                        raise RuntimeError("Unicorn keeps returning without a reason at "
                                           f"{self.machine.describe(self.machine.rip)}")
        finally:
            self._drop_step_state()
            self.tick_path.drop_red_zone_look()
            self.fast_ports.drain()
            if self.machine.red_zone is not None:
                self.machine.red_zone.retire()
            self.host_timer.output_done()
            self.host_timer.poll_interrupts(None)           # between runs nothing runs to ask
            self.clock.pause()
            for callback in self.on_stop:
                callback()

    def slice(self, watch: InterruptWatch) -> Stop | object | None:
        """One emu_start. Returns a Stop, GO_ON, or UNEXPLAINED."""
        # 1. devices up to now; deliver a pending IRQ (not after a stop made only to
        #    drain output in deterministic mode: its timing is the host's, and an IRQ
        #    delivered there would land at a different instruction in every run)
        self._pending = None
        host_timed, self._host_timed_stop = self._host_timed_stop, False
        self._feed_serial_input()
        if not host_timed and self.key_scripts:
            self._release_keys()
        self.advance_devices()
        if not host_timed and self.board.interrupt_pending:   # the common case: read no registers
            self._inject_interrupt()
        self.tick_path.look_at_red_zone()
        if self._pending is not None:                     # delivery ended in a triple fault
            return self._pending
        # 2. arm the next stop
        self._unmapped = None
        self._service_requested = False
        self.clock.arm_stop(None)
        if self._slices_in_run:          # a short run (a guest call) ends in its first slice: no offer
            self._offer_tick()
        self._slices_in_run += 1
        self._arm(self.next_event_ns(), self.budget_end)
        self.interrupts.fast.clear_exception_in_flight()  # Q2
        # 3. run
        error = None
        self._running = True
        try:
            self._step_from = self.machine.rip if self._stepping else None
            self.uc.emu_start(self.machine.rip, RUN_UNTIL_NEVER, count=1 if self._stepping else 0)
        except UcError as exc:
            error = exc
        finally:
            self._running = False
            self.tick_path.take_back()
        rip = self.machine.rip
        self.clock.settle(rip)                            # a stop inside a block: count to RIP
        covering = self.clock.cover_requested_block()     # a budget ends inside the next block
        if covering:
            self._host_timed_stop = self.clock.deterministic   # our stop, not the guest's: no IRQ here
        self.fast_ports.drain()
        handler_error = self.fast_ports.take_error()
        if handler_error is not None:
            raise handler_error                           # a device handler failed inside a C hook
        guarded = self.clock.take_guard_hit()
        if guarded is not None and not self.machine.control_registers.check_at(guarded):
            self.clock.let_guarded_run(guarded)           # a legal MOV to CR: run it once
        misaligned = self.machine.alignment.take_hit()    # #GP(0) raised, or recorded and let run
        # 4. why did it stop?
        if self._pending is not None:
            return self._pending
        if self.machine.guest_call_returned(None if misaligned else rip):   # a #GP moves RIP
            return Stop(StopReason.RETURNED, "guest call returned")   # its hook was skipped (Q13)
        if error is not None:
            return self._stop_for_error(error)
        if self.interrupts.deliver_pending_fault():
            return self._pending
        if watch.interrupted:
            return self._stop_here(*SIGNAL_STOPS[watch.signal_received])
        if self._interrupt_requested:
            self._interrupt_requested = False
            return self._stop_here(StopReason.INTERRUPTED, "interrupted by the debugger")
        if self.host_timer.take_fired(TIMEOUT):
            return self._stop_here(StopReason.TIMEOUT, f"wall-clock timeout of {self.timeout:g} s expired")
        if self.budget_end is not None and self.clock.instructions >= self.budget_end:
            return self._stop_here(StopReason.BUDGET, f"instruction budget of {self.budget_end} reached")
        timer_fired = self.host_timer.take_fired()
        output_drained = self.host_timer.take_fired(OUTPUT)          # drained above
        if self.clock.stopped_by_clock or timer_fired or guarded is not None or misaligned or covering:
            return GO_ON
        if self._service_requested:
            # a device asked for a stop inside an access; if the block then ended in a `hlt`
            # that ran (emu_start ended there, not in front of the next block), the guest
            # halted: the hlt path serves both (an interrupt the device raised wakes it)
            return self._on_hlt() if not self._stepping and self._after_hlt() else GO_ON
        if self._stepping:
            if self._stepped_hlt():
                return self._finish_hlt_step()
            return self._stop_here(StopReason.STEP, "stepped one instruction")
        if self._after_hlt():
            return self._on_hlt()
        if output_drained or (self.serial_stream is not None and self.serial_stream.ready):
            self._host_timed_stop = self.clock.deterministic
            return GO_ON
        return UNEXPLAINED

    # --- 1. devices and interrupts ------------------------------------------------------
    def _feed_serial_input(self) -> None:
        """Bytes a streamed --serial-in delivered, as far as the UART has room."""
        stream = self.serial_stream
        if stream is None or not stream.ready:
            return
        uart = self.board.uart
        room = stream.unread_limit - len(uart.input)
        if room > 0:
            uart.feed(stream.take(room))

    def _release_keys(self) -> None:
        """--keys steps whose {wait:} text has appeared (on the screen, or in output)."""
        now = self.clock.now_ns()
        for script in self.key_scripts:
            script.poll_screen(now)
            script.release()

    def advance_devices(self) -> None:
        now = self.clock.now_ns()
        self.board.advance(now)
        if self.machine.red_zone is not None:
            self.machine.red_zone.expire(now)

    def _inject_interrupt(self) -> None:
        """The board has a request (the slice asked): deliver it if the CPU takes it."""
        interrupts, red_zone = self.interrupts, self.machine.red_zone
        if red_zone is None and not self.step_over_interrupts:
            interrupts.inject_pending_irq(self.board)
            return
        old_rip, old_rsp = self.machine.rip, self.uc.reg_read(x86.UC_X86_REG_RSP)
        if not interrupts.inject_pending_irq(self.board):
            return
        if self.step_over_interrupts and self._interrupt_return is None and self._pending is None:
            self._run_handler_through(old_rip, old_rsp)
        if red_zone is None:
            return
        if interrupts.delivered_in_c:                    # the C path says where the frame went
            fast = interrupts.fast.context
            long_mode, return_rip, new_rsp = fast.last_long_mode, fast.last_return_rip, fast.last_new_rsp
        else:
            long_mode = self.uc.msr_read(MSR.EFER) & EFER_LMA
            return_rip, new_rsp = interrupts.fast.context.last_return_rip, self.uc.reg_read(x86.UC_X86_REG_RSP)
        if (self._pending is None and long_mode and 0 < old_rsp - new_rsp <= RED_ZONE_FRAME_REACH):
            red_zone.interrupt_delivered(old_rsp, new_rsp, return_rip, self.clock.now_ns())

    def _offer_tick(self) -> None:
        """Let C serve the PIT's ticks in this slice if they take the plain path
        (cpu/tick_path.py); nothing may need to see each delivery."""
        red_zone = self.machine.red_zone
        watched = (self._stepping or self.step_over_interrupts or self._interrupt_return is not None
                   or self.interrupts.trace or (red_zone is not None and red_zone.armed)
                   or not self.fast_ports.enabled                  # --trace io: every port access in Python
                   or self.board.mmio.tracer is not None            # --trace mmio: every access too
                   # deterministic mode: every slice start releases keys and feeds input; fewer
                   # slices would move where those land
                   or (self.clock.deterministic and (bool(self.key_scripts) or self.serial_stream is not None)))
        # a hlt woken in C jumps virtual time within one slice: nothing may wait for the
        # slice's end while the guest halts (typed input, --keys)
        stream = self.serial_stream
        hlt_wake = (stream is None or stream.ended) and not self.key_scripts
        self.tick_path.begin(watched=watched, red_zone_reach=None if red_zone is None else RED_ZONE_FRAME_REACH,
                             hlt_wake=hlt_wake)

    def _take_back_tick(self) -> None:
        """Python device code is about to run inside emu_start: the models get the tick
        path's state first, and the PIT's next edge is a host-timer deadline again."""
        if self.tick_path.live:
            self.tick_path.take_back()
            self.reschedule()

    def _count_c_ticks(self, count: int) -> None:
        self.interrupts.irq_count += count

    def _red_zone_look(self, old_rsp: int, new_rsp: int, return_rip: int) -> tuple[int, int] | None:
        """A tick delivered in C pushed its frame just below the interrupted RSP."""
        red_zone = self.machine.red_zone
        red_zone.interrupt_delivered(old_rsp, new_rsp, return_rip, self.clock.now_ns())
        return red_zone.safe_range(return_rip)

    def interrupt_line_changed(self) -> None:
        """The controllers' output changed (from device code, maybe inside a hook). Between
        slices there is nothing to do: the next slice delivers and arms anyway (this
        saves two reschedules per IRQ: the edge, and the acknowledge)."""
        if not self._running:
            return
        if self.board.interrupt_pending:
            self._request_service()
        self.reschedule()

    # --- 2. arming the next stop -----------------------------------------------------------
    def next_event_ns(self) -> int | None:
        """When the guest must next be stopped for a device, or None (asked every
        slice and, in deterministic mode, on every port access)."""
        earliest = self.board.next_event_ns(without=self.tick_path.owned_timers)
        if self.clock.deterministic and self.board.interrupt_pending:   # the next point of a fixed grid: see run()
            earliest = _earlier(earliest, (self.clock.now_ns() // PENDING_POLL_NS + 1) * PENDING_POLL_NS)
        red_zone = self.machine.red_zone
        if red_zone is not None:
            earliest = _earlier(earliest, red_zone.expires_ns)
        for script in self.key_scripts:
            if script.waiting_for is not None:          # look at the screen for its prompt
                earliest = _earlier(earliest, script.next_poll_ns)
        return earliest

    def reschedule(self) -> None:
        """Re-arm the next stop after device state changed (may run inside a hook)."""
        self._arm(self.next_event_ns(), self.budget_end)

    def _arm(self, event_ns: int | None, budget_end: int | None) -> None:
        self.clock.arm_budget(budget_end)
        pending = self.board.interrupt_pending
        # C re-arms the same way when it moves virtual time (vclock_jump), unless the next
        # event moves with time (a poll: 0, C then leaves every jump to the run loop)
        self.clock.set_next_event(0 if pending else event_ns)
        if self.clock.deterministic:
            self.clock.arm_stop(None if event_ns is None else self.clock.instruction_at(event_ns), keep_request=True)
        else:
            self.host_timer.arm(None if event_ns is None else self.clock.host_ns_at(event_ns))
            self.host_timer.poll_interrupts(PENDING_POLL_NS if pending else None)

    # --- stop requests (callable from hooks) ------------------------------------------------
    def request_stop(self, stop: Stop) -> None:
        """End the run with stop at the next opportunity; the first request wins."""
        if self._pending is None:
            self._pending = stop
        self._leave_emu_start()

    def request_stop_after_instruction(self, stop: Stop) -> None:
        """End the run with stop once the instruction now executing has finished (from a
        memory hook, where emu_stop() would run the instruction twice: Q19). Exact when
        the clock counts every instruction, at the end of the basic block otherwise."""
        if self._pending is None:
            self._pending = stop
        if self.clock.per_instruction:
            self.clock.arm_budget(self.clock.exact_instructions)   # in front of the next one
        else:
            self.clock.request_async_stop()

    def interrupt(self) -> None:
        """Stop the guest soon with StopReason.INTERRUPTED (from any thread: a debugger's
        Ctrl-C); a request between two runs stops the next one at its first block."""
        self._interrupt_requested = True
        self.clock.request_async_stop()

    @property
    def pending_stop(self) -> Stop | None:
        """The stop a hook requested in the current (or last) slice, if any."""
        return self._pending

    def _request_service(self) -> None:
        """Leave emu_start so the loop can deliver an interrupt, then carry on."""
        self._service_requested = True
        self._leave_emu_start()

    def _leave_emu_start(self) -> None:
        """Make emu_start return soon, from a hook. Code and exception hooks stop at
        once, in front of the hooked instruction. A device serving a port or MMIO
        access stops at the end of the block instead (the block hook stops before the
        next one), where QEMU takes an interrupt a port write raised. A stop requested
        inside the access would land at the next memory access, after its store, with
        RIP put back before it, so that it runs twice (Q19, Q25); and the block end is
        the same instruction whichever way the clock counts."""
        if self.board.mmio.in_access or self._in_port_access:
            self.clock.request_async_stop()
            return
        self.clock.note_stop_request()
        self.uc.emu_stop()

    # --- 4. classifying a stop ------------------------------------------------------------
    def _on_hlt(self) -> Stop | None:
        """hlt: sleep until the next interrupt (virtual time jumps), or end the run."""
        if not self.uc.reg_read(x86.UC_X86_REG_RFLAGS) & RFLAGS_IF:
            return self._stop_here(StopReason.HALT, "halted (hlt with interrupts disabled)")
        self.hlt_sites.learn(self.machine.rip - 1)       # the next time C may wake it (hlt_sites.py)
        if self.board.interrupt_pending:
            return GO_ON
        wake = self.next_event_ns()
        stream = self.serial_stream
        if stream is not None and not stream.ended and (wake is None or not self.clock.deterministic):
            # waiting for typed input: sleep in host time until it comes (or the next event)
            stream.wait(STREAM_WAIT_SECONDS if wake is None else
                        max(0, min(STREAM_WAIT_SECONDS, (wake - self.clock.now_ns()) / 1e9)))
            self._feed_serial_input()
            self.advance_devices()
            if wake is None or self.clock.now_ns() < wake:
                if not self.board.interrupt_pending:
                    self.uc.reg_write(x86.UC_X86_REG_RIP, self.machine.rip - 1)   # still halted: hlt again
                return GO_ON
        if wake is None:
            return self._stop_here(StopReason.HALT,
                                   "halted (hlt with interrupts enabled, but no unmasked interrupt source)")
        self.clock.skip_ns(wake - self.clock.now_ns())
        self.advance_devices()
        if not self.board.interrupt_pending:
            # the event raised no interrupt (a masked line, a poll): only an interrupt ends hlt
            self.uc.reg_write(x86.UC_X86_REG_RIP, self.machine.rip - 1)
        return GO_ON

    # --- a debugger's step and interrupts (return_watch.py) ------------------------------------
    def _run_handler_through(self, rip: int, rsp: int) -> None:
        """An interrupt was delivered during a step: run its handler whole, then carry on
        with the step where the guest was interrupted."""
        self._step_after_return, self._stepping = self._stepping, False
        from unikernel_sim.cpu.return_watch import ReturnWatch    # only when a step enters a handler

        self._interrupt_return = ReturnWatch(self.machine, rip, rsp, self._interrupt_returned)

    def _interrupt_returned(self) -> None:
        """From the return watch's hook, in front of the interrupted instruction."""
        self._interrupt_return = None
        if self._hlt_step:
            self._hlt_step = False
            self.request_stop(self._stop_here(StopReason.STEP, "stepped hlt (the interrupt that woke it ran)"))
        elif self._step_after_return:
            self._step_after_return, self._stepping = False, True
            # no IRQ at this boundary in deterministic mode: a run would not have one here
            self._host_timed_stop = self.clock.deterministic
            self._request_service()

    @property
    def inside_stepped_interrupt(self) -> bool:
        """A handler is running inside a step (range stepping lets it leave the range)."""
        return self._interrupt_return is not None

    def _stepped_hlt(self) -> bool:
        start = self._step_from
        if start is None or self.machine.rip != start + 1:
            return False
        data = self.machine.memory.read(start, 1)
        return data is not None and data[0] == OPCODE_HLT

    def _finish_hlt_step(self) -> Stop | object:
        """A step of hlt completes when the CPU wakes: virtual time jumps to the next
        interrupt, whose handler runs whole, and the step ends at the instruction after
        hlt (as with the trap flag). With interrupts off it ends the run, as in a run."""
        woken = self._on_hlt()
        if isinstance(woken, Stop):
            return woken
        self._stepping, self._hlt_step = False, True
        rip = self._step_from + 1
        from unikernel_sim.cpu.return_watch import ReturnWatch

        self._interrupt_return = ReturnWatch(self.machine, rip, self.uc.reg_read(x86.UC_X86_REG_RSP),
                                             self._interrupt_returned)
        return woken

    def _drop_step_state(self) -> None:
        if self._interrupt_return is not None:
            self._interrupt_return.remove()
            self._interrupt_return = None
        self._step_after_return = self._hlt_step = False

    def _after_hlt(self) -> bool:
        """emu_start ended just after a `hlt` byte, and not because a hook stopped the guest
        in front of that address: the guest halted. A hook's stop there (an interrupt woke
        the `hlt`, its handler returned, and then an output drain stopped the guest) was
        taken for the guest halting again, and virtual time jumped. A stop asked for that
        has not yet taken effect when the `hlt` runs (a device's, inside an access) leaves
        the `hlt` a `hlt`."""
        rip = self.machine.rip
        if self.clock.stopped_in_front_of(rip):
            return False
        data = self.machine.memory.read(rip - 1, 1) if rip else None
        return data is not None and data[0] == OPCODE_HLT

    def _stop_for_error(self, error: UcError) -> Stop:
        rip = self.machine.rip
        where = self.machine.describe(rip)
        if error.errno in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED):
            access, address, _size = self._unmapped or (None, 0, 0)
            kind = {UC_MEM_WRITE_UNMAPPED: "write to", UC_MEM_FETCH_UNMAPPED: "instruction fetch from"}.get(
                access, "read of")
            return Stop(StopReason.OUTSIDE_RAM,
                        f"{kind} {address:#x} outside guest RAM (0..{self.machine.ram.size:#x}) at {where}",
                        rip=rip, where=where, fault_address=address)
        return Stop(StopReason.EXCEPTION, f"CPU stopped: {error} at {where}", rip=rip, where=where)

    def _stop_here(self, reason: StopReason, summary: str) -> Stop:
        rip = self.machine.rip
        where = self.machine.describe(rip)
        return Stop(reason, f"{summary} at {where}", rip=rip, where=where)

    def _finish(self, stop: Stop) -> Stop:
        if not stop.where and stop.reason is not StopReason.RETURNED:     # a guest call needs no location
            stop.rip = self.machine.rip
            stop.where = self.machine.describe(stop.rip)
        panic = self.machine.panic_message
        if panic is not None and stop.reason in (StopReason.GUEST_EXIT, StopReason.HALT):
            stop = Stop(StopReason.PANIC, f"guest panic: {panic}", rip=stop.rip, where=stop.where,
                        exit_value=stop.exit_value)
        return stop

    # --- I/O instructions ----------------------------------------------------------------
    def _on_in(self, port: int, size: int) -> int:
        self._take_back_tick()
        self._in_port_access = True
        try:
            self._io_cycle()
            if self.serial_stream is not None and self.serial_stream.ready:
                self._feed_serial_input()                # the guest is reading: top the UART up
            return self.board.io.read(port, size)
        finally:
            self._in_port_access = False

    def _on_out(self, port: int, size: int, value: int) -> None:
        self._take_back_tick()
        self._in_port_access = True
        try:
            self._io_cycle()
            self.board.io.write(port, size, value)
        finally:
            self._in_port_access = False

    def _io_cycle(self) -> None:
        """Deterministic mode: a port access takes IO_ACCESS_NS of virtual time, as
        an ISA bus cycle does (~1 us); polling loops then take as many accesses as
        on hardware instead of millions. Fast mode pays the host's own time."""
        if self.clock.deterministic:
            self.clock.skip_ns(IO_ACCESS_NS)
            self.reschedule()

    def _on_unknown_port(self, kind: str, port: int, size: int, value: int) -> None:
        if self.strict_io:
            access = f"read of port {port:#x}" if kind == "in" else f"write of {value:#x} to port {port:#x}"
            self.request_stop(Stop(StopReason.STRICT_IO, f"--strict-io: {access}, which has no device"))

    def _on_unmapped(self, uc, access: int, address: int, size: int, value: int, _user) -> bool:
        self._unmapped = (access, address, size)
        return False


def _check_limits(max_instructions: int | None, timeout: float | None) -> None:
    if max_instructions is not None and not (isinstance(max_instructions, int)
                                             and 0 < max_instructions <= MAX_INSTRUCTIONS):
        raise UsageError(f"instruction budget {max_instructions!r} is out of range", where="max_instructions",
                         hint=f"give 1..{MAX_INSTRUCTIONS}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and math.isfinite(timeout)
                                    and 0 < timeout <= MAX_TIMEOUT_SECONDS):
        raise UsageError(f"timeout {timeout!r} is out of range", where="timeout",
                         hint=f"give more than 0 and at most {MAX_TIMEOUT_SECONDS} seconds")


def _earlier(a: int | None, b: int | None) -> int | None:
    """The earlier of two optional times."""
    if a is None:
        return b
    return a if b is None or a <= b else b
