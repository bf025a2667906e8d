"""Reverse execution for a deterministic run: checkpoints and replay (rr's idea).

While the debugger runs the guest forward, a snapshot is taken every `interval`
instructions, at absolute instruction counts (multiples of the interval), so that
every replay meets the same checkpoints. Going back to instruction N is: restore the
latest checkpoint at or before N, then run forward exactly N - checkpoint
instructions with breakpoints and watchpoints suspended. Deterministic mode makes
the replay the same execution (devices, interrupts at the same instructions:
runloop.run's note on slicing), and a restore rewinds the console so nothing is
printed twice.

reverse_continue looks for the latest breakpoint or watchpoint hit before the
current instruction: segment by segment backwards, it replays each with the stops
armed and keeps the last hit it sees. It stops on a breakpoint's instruction, and
before a watched access (going backwards, that is where the value changes).

Unicorn keeps one chain of snapshot levels: restoring a checkpoint drops the later
ones, which the next forward run takes again as it passes their counts.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unikernel_sim.stops import Stop, StopReason

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine
    from unikernel_sim.snapshot import Snapshot
    from unikernel_sim.watchpoints import Hit

DEFAULT_INTERVAL = 1_000_000          # instructions between checkpoints
CLOSE_FRACTION = 64                   # a replay also leaves one checkpoint within interval/64 of its end
HITS = (StopReason.BREAKPOINT, StopReason.WATCHPOINT)


@dataclass
class Checkpoint:
    instructions: int
    snapshot: "Snapshot"


@dataclass
class Recorded:
    """A breakpoint or watchpoint hit seen while replaying a segment."""

    instructions: int
    stop: Stop
    watch: "Hit | None"


class History:
    def __init__(self, machine: "Machine", interval: int = DEFAULT_INTERVAL) -> None:
        if not machine.clock.deterministic:
            raise ValueError("reverse execution needs a deterministic machine (--deterministic)")
        machine.clock.start_counting()
        self.machine = machine
        self.interval = interval
        self.close_interval = max(1, interval // CLOSE_FRACTION)
        self.checkpoints = [Checkpoint(self._now(), machine.snapshot())]

    def _now(self) -> int:
        return self.machine.clock.instructions

    @property
    def beginning(self) -> int:
        return self.checkpoints[0].instructions

    # --- forward ------------------------------------------------------------------------
    def forward(self, *, step: bool = False, within: tuple[int, int] | None = None) -> Stop:
        """Run on, step, or range-step (step, then on while RIP is in within = [start,
        end): Machine.step_range), taking the checkpoints on the way."""
        machine = self.machine
        if step or within:
            stop = machine.step(over_interrupts=True)
            self._checkpoint_if_due()
            if not within or stop.reason is not StopReason.STEP or not within[0] <= machine.rip < within[1]:
                return stop
            with machine.range_stepping(*within):
                return self._run_on()
        return self._run_on()

    def _run_on(self) -> Stop:
        machine = self.machine
        while True:
            stop = machine.run(max_instructions=self._next_boundary() - self._now())
            if stop.reason is not StopReason.BUDGET:
                return stop
            self._checkpoint_if_due()

    def _next_boundary(self) -> int:
        return (self._now() // self.interval + 1) * self.interval

    def _checkpoint_if_due(self) -> None:
        now = self._now()
        if now % self.interval == 0 and now > self.checkpoints[-1].instructions:
            self.checkpoints.append(Checkpoint(now, self.machine.snapshot()))

    # --- backward ---------------------------------------------------------------------------
    def reverse_step(self) -> Stop | None:
        """Back one instruction; None at the beginning of the history."""
        target = self._now() - 1
        if target < self.beginning:
            return None
        self._run_to(target)
        return Stop(StopReason.STEP, "stepped back one instruction", rip=self.machine.rip,
                    where=self.machine.describe(self.machine.rip))

    def reverse_continue(self) -> Stop | None:
        """Back to the latest breakpoint or watchpoint hit before now; None (and the
        machine at the beginning of the history) if there is none."""
        end = self._now()
        for index in reversed(range(len(self.checkpoints))):
            start = self.checkpoints[index].instructions
            if start >= end:
                continue
            hits = self._hits_between(index, end)
            if hits:
                hit = hits[-1]
                if hit.stop.reason is StopReason.BREAKPOINT:
                    self._run_to(hit.instructions)
                    self.machine.breakpoints.stopped_on(self.machine.rip)
                else:
                    # going backwards, the watched value changes at the accessing instruction:
                    # stop before it (as gdb's own record target and rr do), the old value back
                    self._run_to(hit.instructions - 1)
                    self.machine.watchpoints.last_hit = hit.watch
                return hit.stop
            end = start
        self._run_to(self.beginning)
        return None

    def _hits_between(self, index: int, end: int) -> list[Recorded]:
        """Replay checkpoint index up to instruction end with the stops armed."""
        self._restore(index)
        machine, hits = self.machine, []
        while self._now() < end:
            stop = machine.run(max_instructions=min(end, self._next_boundary()) - self._now())
            if stop.reason in HITS and self._now() < end:
                watch = machine.watchpoints.last_hit if stop.reason is StopReason.WATCHPOINT else None
                hits.append(Recorded(self._now(), stop, watch))
            elif stop.reason is StopReason.BUDGET:
                self._checkpoint_if_due()
            elif stop.reason not in HITS:
                break                                   # the run ended there (exit, crash)
        return hits

    def _run_to(self, target: int) -> None:
        """Replay from the latest checkpoint at or before target to exactly target.

        On the way it leaves one checkpoint at the last multiple of close_interval before
        target: stepping back again and again (reverse-stepi held down) then replays at
        most close_interval instructions per step instead of up to a whole interval."""
        index = max(i for i, checkpoint in enumerate(self.checkpoints) if checkpoint.instructions <= target)
        self._restore(index)
        close = target - target % self.close_interval
        with self._stops_suspended():
            while self._now() < target:
                goal = min(target, self._next_boundary())
                if self._now() < close < goal:
                    goal = close
                stop = self.machine.run(max_instructions=goal - self._now())
                if stop.reason is not StopReason.BUDGET and self._now() != goal:
                    # (the guest's exit asked for in the block that ends the replay is no divergence)
                    raise RuntimeError(f"replay diverged: {stop.summary} before instruction {target}")
                self._checkpoint_if_due()
                if self._now() == close and close > self.checkpoints[-1].instructions:
                    self.checkpoints.append(Checkpoint(close, self.machine.snapshot()))

    def _restore(self, index: int) -> None:
        self.machine.restore(self.checkpoints[index].snapshot)
        del self.checkpoints[index + 1:]               # Unicorn dropped the later snapshot levels

    @contextmanager
    def _stops_suspended(self):
        """Breakpoints and watchpoints off while replaying to a position."""
        machine = self.machine
        breakpoints = machine.breakpoints.addresses
        watchpoints = machine.watchpoints.keys
        for address in breakpoints:
            machine.breakpoints.remove(address)
        for address, length, kind in watchpoints:
            machine.watchpoints.remove(address, length, kind)
        try:
            yield
        finally:
            for address in breakpoints:
                machine.breakpoints.add(address)
            for address, length, kind in watchpoints:
                machine.watchpoints.add(address, length, kind)
