"""Build the C extensions: the virtual clock's hooks, the COM1 fast path, the SSE
alignment guard, the common case of interrupt delivery, the timer tick, the HPET counter's
reads, the host-clock deadlines, a guest call's set-up, a snapshot's restore, the exact
profiler and the alignment guard's decode; the snapshots of guest memory; the loops of a device-state load.

Everything else is declared in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "unikernel_sim.cpu._vclock",
            sources=["src/unikernel_sim/cpu/_vclock.c", "src/unikernel_sim/cpu/_fast_ports.c",
                     "src/unikernel_sim/cpu/_alignment.c", "src/unikernel_sim/cpu/_irq_delivery.c",
                     "src/unikernel_sim/cpu/_profile.c", "src/unikernel_sim/cpu/_tick_path.c",
                     "src/unikernel_sim/cpu/_host_timer.c", "src/unikernel_sim/cpu/_guest_call.c",
                     "src/unikernel_sim/cpu/_timer_thread.c", "src/unikernel_sim/cpu/_hpet_counter.c",
                     "src/unikernel_sim/cpu/_tb_icounts.c",
                     "src/unikernel_sim/cpu/_snapshot_restore.c", "src/unikernel_sim/cpu/_lite_scan.c"],
            depends=["src/unikernel_sim/cpu/_vclock.h", "src/unikernel_sim/cpu/_alignment.h",
                     "src/unikernel_sim/cpu/_irq_delivery.h", "src/unikernel_sim/cpu/_tick_path.h",
                     "src/unikernel_sim/cpu/_timer_thread.h", "src/unikernel_sim/cpu/_tb_icounts.h",
                     "src/unikernel_sim/cpu/_host_timer.h"],
            extra_compile_args=["-O2", "-pthread"],
            extra_link_args=["-pthread"],
        ),
        Extension(
            "unikernel_sim.memory._ram_snapshots",
            sources=["src/unikernel_sim/memory/_ram_snapshots.c"],
            extra_compile_args=["-O2"],
        ),
        Extension(
            "unikernel_sim.devices._state_load",
            sources=["src/unikernel_sim/devices/_state_load.c"],
            extra_compile_args=["-O2"],
        ),
    ]
)
