/* The virtual clock's hot path, in C so that no Python runs per instruction.
 *
 * Unicorn calls vclock_count before every guest instruction when the machine
 * counts instructions (deterministic mode, budgets, guest calls); it stops
 * emu_start *before* instruction number stop_at, so a run that stops there has
 * executed exactly stop_at instructions (Unicorn emits its exit-request check
 * after the code hook, so the hooked instruction does not run).
 *
 * vclock_rdtsc is a UC_HOOK_INSN hook for RDTSC. The Unicorn 2.1.4 Python
 * binding refuses that hook (UC_ERR_ARG) but the C core accepts it; the Python
 * side registers this function through the library's own uc_hook_add. It
 * returns the virtual TSC in EDX:EAX and returns 1 so the instruction is
 * skipped. The TSC is derived from the instruction count (deterministic) or
 * from the host's monotonic clock (fast mode), scaled to the configured rate.
 *
 * The struct layout is mirrored by VClockState in vclock.py, which compares
 * its size with vclock_struct_size() when it is imported. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <time.h>

#include "_alignment.h"
#include "_vclock.h"

static uint64_t host_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Virtual nanoseconds since time zero. */
uint64_t vclock_now_ns(const struct vclock *vc)
{
    if (vc->deterministic)
        return (uint64_t)(((unsigned __int128)vc->instructions * vc->ns_per_instruction_q32) >> 32)
               + vc->virtual_ns_skipped;
    return host_monotonic_ns() - vc->host_ns_at_zero - vc->host_ns_paused + vc->virtual_ns_skipped;
}

/* sizeof(struct vclock): vclock.py checks it against its ctypes mirror at import. */
uint64_t vclock_struct_size(void)
{
    return sizeof(struct vclock);
}

uint64_t vclock_host_ns(void)
{
    return host_monotonic_ns();
}

uint64_t vclock_tsc(const struct vclock *vc)
{
    uint64_t ns = vclock_now_ns(vc);
    return vc->tsc_offset + (uint64_t)(((unsigned __int128)ns * vc->tsc_hz) / 1000000000ull);
}

/* Whether address is one of the guarded instructions (a handful: linear). */
static int guarded(const struct vclock *vc, uint64_t address)
{
    for (uint64_t i = 0; i < vc->guard_count; i++)
        if (vc->guard_addresses[i] == address)
            return 1;
    return 0;
}

/* While counting, this hook runs before every instruction, and Unicorn walks every
 * other code hook's bounds for every instruction too (measured: five one-address
 * Python hooks made deterministic mode 2x slower). So the few addresses the
 * control-register guard watches are checked here instead. */
void vclock_count(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct vclock *vc = user_data;
    (void)address;
    (void)size;
    /* After emu_stop from an I/O or exception hook, Unicorn still calls the code
     * hook of the next instruction before it leaves; that instruction never runs. */
    if (vc->stop_requested)
        return;
    if (address >= vc->guard_lo && address <= vc->guard_hi && guarded(vc, address)) {
        if (vc->guard_skip == address) {
            vc->guard_skip = UINT64_MAX;      /* checked by the host: this time it runs */
        } else {
            vc->guard_hit = address;          /* stop before it; the host checks the write */
            vc->stop_requested = 1;
            vc->emu_stop(uc);
            return;
        }
    }
    if (vc->align && align_is_site(vc->align, address) && align_check(uc, vc->align, address)) {
        vc->stop_requested = 1;               /* misaligned SSE operand: the host raises #GP */
        return;
    }
    if (vc->instructions >= vc->stop_at) {
        vc->stopped = 1;
        vc->emu_stop(uc);
        return;
    }
    vc->instructions++;
}

uint32_t vclock_rdtsc(void *uc, void *user_data)
{
    struct vclock *vc = user_data;
    uint64_t tsc = vclock_tsc(vc);
    uint64_t low = tsc & 0xFFFFFFFFull;
    uint64_t high = tsc >> 32;

    vc->rdtsc_count++;
    vc->reg_write(uc, (int)vc->reg_rax, &low);
    vc->reg_write(uc, (int)vc->reg_rdx, &high);
    return 1;
}

/* RDTSCP: the same virtual TSC as RDTSC (QEMU's own would be host time, and
 * different on every run), and ECX = IA32_TSC_AUX[31:0], zero-extended. */
uint32_t vclock_rdtscp(void *uc, void *user_data)
{
    struct vclock *vc = user_data;
    struct uc_x86_msr aux = {MSR_TSC_AUX, 0};
    uint64_t ecx;

    vclock_rdtsc(uc, user_data);
    vc->reg_read(uc, (int)vc->reg_msr, &aux);
    ecx = aux.value & 0xFFFFFFFFull;
    vc->reg_write(uc, (int)vc->reg_rcx, &ecx);
    return 1;
}

/* A block hook: the only place where a stop asked for by another thread (the
 * host timer, Ctrl-C, the wall-clock timeout) takes effect.
 *
 * uc_emu_stop() called from another thread is not safe in Unicorn 2.1.4: the
 * core checks for an exit request after every guest load and store and, when it
 * sees one, restores RIP to the start of the current instruction. A request that
 * arrives between the load and the store of a read-modify-write instruction
 * (`add [mem], reg`, `inc [mem]`) therefore leaves the store done and RIP before
 * the instruction, which runs a second time when emulation resumes
 * (docs/unicorn-quirks.md Q19). Calling uc_emu_stop() from this hook, before
 * the block's first instruction, is exact: a check that sees the request can
 * only come before any store of that block. */
void vclock_block(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct vclock *vc = user_data;
    (void)address;
    (void)size;
    if (__atomic_load_n(&vc->async_stop, __ATOMIC_RELAXED) &&
        __atomic_exchange_n(&vc->async_stop, 0, __ATOMIC_ACQ_REL)) {
        vc->stop_requested = 1;       /* the block's first instruction will not run */
        vc->emu_stop(uc);
    }
}

/* Ask for a stop at the next block from any thread (no GIL needed). A request
 * made while the guest is not running waits for the next emu_start. */
void vclock_request_async_stop(struct vclock *vc)
{
    __atomic_store_n(&vc->async_stop, 1, __ATOMIC_RELEASE);
}

/* A code hook on a function's final `ret`: remembers which function returned
 * last, so that a "return into nowhere" can name it. */
void vclock_ret(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct vclock *vc = user_data;
    (void)uc;
    (void)size;
    vc->last_returns[vc->ret_count++ % RETURN_HISTORY] = address;
}

/* An importable module, so that setuptools builds and installs this file;
 * the functions above are reached through ctypes, not through Python. */
static struct PyModuleDef vclock_module = {
    PyModuleDef_HEAD_INIT, "_vclock",
    "C hooks of the virtual clock (reached through ctypes).", -1, NULL,
};

PyMODINIT_FUNC PyInit__vclock(void)
{
    return PyModule_Create(&vclock_module);
}
