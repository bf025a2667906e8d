"""Host twin of firmware/kernel_lib: typed calls into the guest, the heap
inspector, guest scratch memory, and the reference semantics tests check
the guest against."""
from unikernel_sim.kernel_lib.calls import (  # noqa: F401
    calloc, free, heap_stats, kprintf, malloc, realloc, serial_put_hex, serial_put_int, serial_put_uint,
)
from unikernel_sim.kernel_lib.heap import HeapInspector, HeapStats  # noqa: F401
from unikernel_sim.kernel_lib.scratch import GuestScratch  # noqa: F401
