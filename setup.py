"""Build the one C extension: the virtual clock's hooks, the COM1 fast path and the SSE
alignment guard.

Everything else is declared in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "unikernel_sim.cpu._vclock",
            sources=["src/unikernel_sim/cpu/_vclock.c", "src/unikernel_sim/cpu/_fast_ports.c",
                     "src/unikernel_sim/cpu/_alignment.c"],
            depends=["src/unikernel_sim/cpu/_vclock.h", "src/unikernel_sim/cpu/_alignment.h"],
            extra_compile_args=["-O2"],
        )
    ]
)
