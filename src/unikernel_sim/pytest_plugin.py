"""pytest plugin (entry point ``pytest11``): a booted kernel for every test.

Fixtures
  unisim_firmware   path of the bundled reference unikernel (built once per session)
  unisim_booted     the firmware booted once per session (deterministic mode, command
                    line ``job=idle``) up to ``kernel_ready()``, with its snapshot
  unisim_machine    a Machine restored to that snapshot before each test
  unisim_scratch    guest memory for arguments (strings, buffers), reset per test

A guest call that fails raises GuestCallError; its message is the crash report,
so pytest shows it in the failure.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

READY_SYMBOL = "kernel_ready"
IDLE_CMDLINE = "job=idle"
BOOT_TIMEOUT_S = 60.0


@dataclass
class BootedKernel:
    machine: Any
    snapshot: Any
    kernel_path: str
    coverage: Any = None           # _SessionCoverage with --unisim-coverage

    def __repr__(self) -> str:
        return f"BootedKernel({self.kernel_path!r}, {self.snapshot!r})"

    def fresh(self):
        """The machine, back at the booted snapshot."""
        self.machine.restore(self.snapshot)
        return self.machine


def boot_to_ready(kernel_path: str, *, cmdline: str = IDLE_CMDLINE, **machine_options) -> BootedKernel:
    """Boot kernel_path until it calls kernel_ready() and snapshot it there."""
    from unikernel_sim.machine import Machine
    from unikernel_sim.stops import StopReason

    machine = Machine(**machine_options)
    machine.load(kernel_path, cmdline=cmdline)
    address = machine.add_breakpoint(READY_SYMBOL)
    stop = machine.run(timeout=BOOT_TIMEOUT_S)
    if stop.reason != StopReason.BREAKPOINT:
        raise RuntimeError(f"{kernel_path} did not reach {READY_SYMBOL}(): {stop.summary}\n"
                           f"serial output:\n{machine.serial.text()}")
    machine.remove_breakpoint(address)
    # Interrupts that became pending just before kernel_ready() (the timer, once
    # unmasked) would otherwise be delivered at the start of every test's first call:
    # let them drain through one harmless call first.
    machine.call(READY_SYMBOL)
    return BootedKernel(machine, machine.snapshot(), kernel_path)


@pytest.fixture(scope="session")
def unisim_firmware(request) -> str:
    from unikernel_sim.firmware import build_firmware

    if request.config.getoption(COVERAGE_OPTION):
        return str(build_firmware("coverage", {"COVERAGE": "1"}))
    return str(build_firmware())


@pytest.fixture(scope="session")
def unisim_booted(unisim_firmware, request) -> BootedKernel:
    booted = boot_to_ready(unisim_firmware, deterministic=True)
    path = request.config.getoption(PROFILE_OPTION)
    if path:
        _profile_the_session(booted, _per_worker(path, request.config), request)
    directory = request.config.getoption(COVERAGE_OPTION)
    if directory:
        booted.coverage = _SessionCoverage(booted.machine, directory)
        request.addfinalizer(booted.coverage.write)
    return booted


@pytest.fixture
def unisim_machine(unisim_booted):
    machine = unisim_booted.fresh()
    yield machine
    if unisim_booted.coverage is not None:
        unisim_booted.coverage.add_test(machine)


class _SessionCoverage:
    """The firmware's coverage counters summed over the session's tests: each test starts
    from the booted snapshot, so its share is its counters minus the snapshot's."""

    def __init__(self, machine, directory: str) -> None:
        from unikernel_sim.coverage.collect import counters_of

        self.directory = directory
        self.baseline = counters_of(machine)
        self.total: list = []

    def add_test(self, machine) -> None:
        from unikernel_sim.coverage.collect import counters_of
        from unikernel_sim.coverage.gcda import add, subtract

        self.total = add(self.total, subtract(counters_of(machine), self.baseline))

    def write(self) -> None:
        from unikernel_sim.coverage.collect import write_coverage

        if self.total:
            write_coverage(self.total, self.directory)


@pytest.fixture
def unisim_scratch(unisim_machine):
    from unikernel_sim.kernel_lib.scratch import GuestScratch

    return GuestScratch.after_heap(unisim_machine)


# --- a failed guest test, kept for gdb ---------------------------------------------------
GDB_OPTION = "--unisim-gdb-on-failure"


PROFILE_OPTION = "--unisim-profile"
COVERAGE_OPTION = "--unisim-coverage"


def pytest_addoption(parser) -> None:
    parser.addoption(GDB_OPTION, metavar="[HOST:]PORT", default=None,
                     help="when a test using unisim_machine fails, keep its machine where it stopped and "
                          "wait for gdb on HOST:PORT (docs/debugging.md) before going on")
    parser.addoption(COVERAGE_OPTION, metavar="DIR", default=None,
                     help="run the guest tests on the firmware's coverage build and add what each test's guest "
                          "calls covered to the .gcda files under DIR (gcov/gcovr; docs/profiling.md)")
    parser.addoption(PROFILE_OPTION, metavar="FILE.json", default=None,
                     help="profile every guest call the tests make on unisim_machine (after the boot) and save "
                          "the summed profile (docs/profiling.md); under xdist one file per worker, "
                          "FILE.gwN.json")


def _per_worker(path: str, config) -> str:
    worker = getattr(config, "workerinput", {}).get("workerid")
    if not worker:
        return path
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}.{worker}.{suffix}" if dot else f"{path}.{worker}"


def _profile_the_session(booted: BootedKernel, path: str, request) -> None:
    """One profiler on the session's machine: every test restores the booted snapshot and
    its calls add to the same tree (the clock goes back with each restore; the tree's own
    total is the session's count)."""
    from unikernel_sim.profiling.collector import Profiler

    profiler = Profiler(booted.machine)

    def save() -> None:
        profile = profiler.result()
        profile.instructions = profile.counted
        profile.save(path)
        profiler.close()

    request.addfinalizer(save)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    address = item.config.getoption(GDB_OPTION)
    if address is None or report.when != "call" or not report.failed:
        return
    machine = item.funcargs.get("unisim_machine") if hasattr(item, "funcargs") else None
    if machine is None:
        return
    _serve_failed_machine(item, machine, address)


def _serve_failed_machine(item, machine, address: str) -> None:
    """Wait for one gdb client on the failed test's machine; the session ends when gdb
    detaches, kills or disconnects, and the test run goes on."""
    import sys

    from unikernel_sim.debug.gdbstub import GdbServer

    host, _, port = address.rpartition(":")
    server = GdbServer(machine, host or "127.0.0.1", int(port))
    where = f"{server.address[0]}:{server.address[1]}"
    print(f"\nunisim: {item.nodeid} failed; its machine waits for gdb on {where}: "
          f"gdb {machine.kernel.path if machine.kernel else ''} -ex 'target remote {where}'",
          file=sys.__stderr__, flush=True)
    try:
        outcome, _ = server.serve_one()
    finally:
        server.close()
    print(f"unisim: gdb {outcome}; the test run goes on", file=sys.__stderr__, flush=True)
