"""Build the one C extension: the virtual clock's hooks and the COM1 fast path.

Everything else is declared in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "unikernel_sim.cpu._vclock",
            sources=["src/unikernel_sim/cpu/_vclock.c", "src/unikernel_sim/cpu/_fast_ports.c"],
            depends=["src/unikernel_sim/cpu/_vclock.h"],
            extra_compile_args=["-O2"],
        )
    ]
)
