"""Build the one C extension: the virtual clock's per-instruction hooks.

Everything else is declared in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "unikernel_sim.cpu._vclock",
            sources=["src/unikernel_sim/cpu/_vclock.c"],
            extra_compile_args=["-O2"],
        )
    ]
)
