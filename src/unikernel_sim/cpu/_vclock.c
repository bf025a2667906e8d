/* The virtual clock's hot path, in C so that no Python runs per instruction.
 *
 * Instructions are counted per translated block by vclock_block (deterministic
 * mode, budgets, guest calls), and per instruction by vclock_count only where a
 * stop must land exactly (see "Instruction counting" below).
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
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "_alignment.h"
#include "_host_timer.h"
#include "_tb_icounts.h"
#include "_tick_path.h"
#include "_vclock.h"

static uint64_t host_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The instruction count of the block at address: the table's (_tb_icounts.c) when it
 * knows, else Unicorn's own translation's (uc_ctl), which the table then learns. */
static uint64_t block_icount(void *uc, struct vclock *vc, uint64_t address, uint32_t size)
{
    struct uc_tb tb;
    uint32_t known = vc->icounts != NULL ? tb_icounts_lookup(vc->icounts, address, size) : TB_ICOUNT_UNKNOWN;
    if (known != TB_ICOUNT_UNKNOWN)
        return known;
    if (vc->ctl(uc, (int)vc->ctl_request_cache, address, &tb) == 0 && tb.icount > 0) {
        if (vc->icounts != NULL)
            tb_icounts_learn(vc->icounts, tb.pc, tb.size, tb.icount);
        return tb.icount;
    }
    vc->block_lookups_failed++;
    return 1;
}

/* A UC_HOOK_EDGE_GENERATED hook: Unicorn translated the block cur (the table's source). */
void vclock_tb_generated(void *uc, struct uc_tb *cur, struct uc_tb *prev, void *user_data)
{
    struct vclock *vc = user_data;
    (void)uc;
    (void)prev;
    if (vc->icounts != NULL)
        tb_icounts_learn(vc->icounts, cur->pc, cur->size, cur->icount);
}

/* Virtual nanoseconds since time zero. */
uint64_t vclock_now_ns(const struct vclock *vc)
{
    if (vc->deterministic)
        return (uint64_t)(((unsigned __int128)vc->instructions * vc->ns_per_instruction_q32) >> 32)
               + vc->virtual_ns_skipped;
    return host_monotonic_ns() - vc->host_ns_at_zero - vc->host_ns_paused + vc->virtual_ns_skipped;
}

/* Deterministic mode: the instruction count at which virtual time reaches ns
 * (VirtualClock.instruction_at): time = instructions x ns per instruction + ns skipped. */
uint64_t vclock_instruction_at(const struct vclock *vc, int64_t ns)
{
    int64_t span = ns - vc->virtual_ns_skipped;
    unsigned __int128 scaled = (unsigned __int128)(span > 0 ? (uint64_t)span : 0) << 32;
    return (uint64_t)((scaled + vc->ns_per_instruction_q32 - 1) / vc->ns_per_instruction_q32);
}

/* Virtual time jumps ns ahead inside a slice (a port access's time in deterministic mode,
 * a hlt woken in C): the next device event, armed from the virtual time it had
 * (RunLoop._arm), comes sooner - as an instruction count in deterministic mode, as a host
 * time in fast mode - as it would if the run loop armed it again. The tick path's own
 * edge is its caller's to re-arm. */
void vclock_jump(struct vclock *vc, uint64_t ns)
{
    vc->virtual_ns_skipped += (int64_t)ns;
    if (vc->deterministic)
        vc->stop_at = vc->event_ns == UINT64_MAX ? UINT64_MAX : vclock_instruction_at(vc, (int64_t)vc->event_ns);
    else if (vc->host_timer != NULL)
        host_timer_shift_event(vc->host_timer, ns);
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

static uint64_t tsc_at_ns(const struct vclock *vc, uint64_t ns)
{
    return vc->tsc_offset + (uint64_t)(((unsigned __int128)ns * vc->tsc_hz) / 1000000000ull);
}

uint64_t vclock_tsc(const struct vclock *vc)
{
    return tsc_at_ns(vc, vclock_now_ns(vc));
}

/* Whether address is one of the guarded instructions (a handful: linear). */
static int guarded(const struct vclock *vc, uint64_t address)
{
    for (uint64_t i = 0; i < vc->guard_count; i++)
        if (vc->guard_addresses[i] == address)
            return 1;
    return 0;
}

/* The soft TLB's size.
 *
 * Unicorn 2.1.4 keeps QEMU's dynamic TLB: 256 entries per MMU mode at first, doubled
 * when more than 70 % of it was in use, halved when less than 30 % was for a whole
 * 100 ms window. But it only looks when the whole TLB is flushed (a CR3 or CR4 write,
 * a task switch). A bare-metal kernel that never reloads CR3 after boot, and uses
 * invlpg for its page-table changes, keeps 256 entries for ever: a loop over more
 * than 256 pages misses on every one and pays a page walk each (docs/unicorn-quirks.md,
 * Q28). A review flushes the TLB on a schedule of run time (vclock_tlb_review_after),
 * so that QEMU's own rule gets to size it: a kernel touching 8,192 pages a round went
 * from 0.65-0.88 to 0.30-0.32 ms a round (docs/performance.md). A flush is invisible to a kernel that follows
 * the SDM (vol. 3A, 4.10.4: a translation may be dropped from the TLB at any time);
 * one that changed a PTE without invlpg may see the new entry sooner than it did. The
 * cost: refilling what the TLB held, a few hundred ns a page, once per review.
 * Deterministic mode reviews at the first block boundary at or after an instruction
 * count (not at the rest of a block a stop cut, as the tick path: the same points in
 * every run, however it is cut); fast mode when the host timer sets POLL_TLB_REVIEW. */
uint64_t vclock_tlb_review_after(uint64_t ns)
{
    uint64_t point = TLB_REVIEW_FIRST_NS, gap = TLB_REVIEW_FIRST_NS;
    while (point <= ns && gap < TLB_REVIEW_GAP_MAX_NS) {    /* the ramp: 1, 3, 7, ... 127 ms */
        gap = gap * 2 < TLB_REVIEW_GAP_MAX_NS ? gap * 2 : TLB_REVIEW_GAP_MAX_NS;
        point += gap;
    }
    if (point <= ns)                                        /* then every 100 ms */
        point += (ns - point) / TLB_REVIEW_GAP_MAX_NS * TLB_REVIEW_GAP_MAX_NS + TLB_REVIEW_GAP_MAX_NS;
    return point;
}

static void review_tlb(void *uc, struct vclock *vc)
{
    vc->ctl(uc, (int)vc->ctl_tlb_flush);
    vc->tlb_reviews++;
}

static void review_tlb_deterministic(void *uc, struct vclock *vc)
{
    if (vc->tlb_review_at != 0)
        review_tlb(uc, vc);
    uint64_t at = vclock_instruction_at(vc, (int64_t)vclock_tlb_review_after(vclock_now_ns(vc)));
    vc->tlb_review_at = at > vc->instructions ? at : vc->instructions + 1;
}

/* Instruction counting.
 *
 * The count is kept per translated block: vclock_block (a UC_HOOK_BLOCK hook on
 * all code) adds the block's instruction count when the block starts: from the
 * counts Unicorn reported as it translated each block (_tb_icounts.c, keyed by the
 * block's address and size, which the hook is given), or, where that table cannot
 * be sure (two translations disagreed), asked of Unicorn itself (uc_ctl
 * UC_CTL_TB_REQUEST_CACHE: the executing block answers). That is one table lookup
 * per block instead of a helper call per instruction. While a
 * block runs, the count (and so virtual time: RDTSC, the PIT) is the count at
 * its end. A run that stops inside a block is settled by the host, which counts
 * the instructions before RIP (VirtualClock.settle).
 *
 * Stops: a device deadline (stop_at) stops at the first block boundary at or
 * after it (not at the start of the rest of a block a stop cut), in every mode, so interrupts land at the same instruction whatever
 * counts them. A budget (budget_at) stops exactly: when a block would cross it,
 * the block hook stops before the block and asks the host (exact_request_pc) to
 * cover the block with vclock_count, which then runs before each of its
 * instructions and stops in front of instruction number budget_at. With
 * all_exact, vclock_count runs before every instruction (watchpoints, which must
 * stop right after an access). */

/* Runs before each instruction where the count must be exact (all_exact, or the
 * exact range). Stops in front of instruction number budget_at. */
void vclock_count(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct vclock *vc = user_data;
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
            vclock_stop_before(uc, vc, address);
            return;
        }
    }
    if (vc->align && align_is_site(vc->align, address) && align_check(uc, vc->align, address)) {
        vc->stop_requested = 1;               /* misaligned SSE operand: the host raises #GP */
        return;
    }
    if (!vc->in_block || !vc->block_covered)
        return;
    if (vc->block_start + vc->block_position >= vc->budget_at) {
        /* the host settles the count at block_start + block_position (VirtualClock.settle) */
        if (vc->block_position)
            vc->partial_pc = address;     /* the next run resumes inside this block */
        vc->stopped = 1;
        vclock_stop_before(uc, vc, address);
        return;
    }
    vc->block_position++;
}

/* The instructions started up to and including the one at RIP, inside the block
 * now running (counted whole at its start). Where the per-instruction hook runs it
 * knows; elsewhere the host decodes the block up to RIP once per (block, address)
 * and the answer is cached (it is only wrong if the code there is rewritten while
 * its old translation's start stays the same: the cost of not decoding in C). */
static uint64_t count_through(void *uc, struct vclock *vc)
{
    uint64_t rip = 0, slot, before;
    if (!vc->counting || !vc->in_block)
        return vc->instructions;
    if (vc->block_covered)
        return vc->block_start + vc->block_position;
    vc->reg_read(uc, (int)vc->reg_rip, &rip);
    if (rip < vc->block_pc || rip >= vc->block_pc + vc->block_size || !vc->count_between)
        return vc->instructions;
    slot = ((vc->block_pc * 31) ^ rip) % POSITION_CACHE;
    if (vc->position_keys[slot][0] == vc->block_pc && vc->position_keys[slot][1] == rip) {
        before = vc->position_values[slot];
    } else {
        before = vc->count_between(vc->block_pc, rip);
        vc->position_keys[slot][0] = vc->block_pc;
        vc->position_keys[slot][1] = rip;
        vc->position_values[slot] = before;
    }
    return vc->block_start + before + 1;
}

/* Deterministic time at the current instruction, exact inside a block. */
static uint64_t tsc_here(void *uc, struct vclock *vc)
{
    uint64_t counted, ns;
    if (!vc->deterministic)
        return vclock_tsc(vc);
    counted = vc->instructions;
    vc->instructions = count_through(uc, vc);
    ns = vclock_now_ns(vc);
    vc->instructions = counted;
    return tsc_at_ns(vc, ns);
}

static uint32_t read_tsc(void *uc, struct vclock *vc)
{
    uint64_t tsc = tsc_here(uc, vc);
    uint64_t low = tsc & 0xFFFFFFFFull;
    uint64_t high = tsc >> 32;

    vc->rdtsc_count++;
    vc->reg_write(uc, (int)vc->reg_rax, &low);
    vc->reg_write(uc, (int)vc->reg_rdx, &high);
    return 1;
}

uint32_t vclock_rdtsc(void *uc, void *user_data)
{
    return read_tsc(uc, user_data);
}

/* RDTSCP: the same virtual TSC as RDTSC (QEMU's own would be host time, and
 * different on every run), and ECX = IA32_TSC_AUX[31:0], zero-extended. */
uint32_t vclock_rdtscp(void *uc, void *user_data)
{
    struct vclock *vc = user_data;
    struct uc_x86_msr aux = {MSR_TSC_AUX, 0};
    uint64_t ecx;

    read_tsc(uc, vc);
    vc->reg_read(uc, (int)vc->reg_msr, &aux);
    ecx = aux.value & 0xFFFFFFFFull;
    vc->reg_write(uc, (int)vc->reg_rcx, &ecx);
    return 1;
}

/* What falls due at a block boundary while counting: a deadline or budget stop, the tick
 * path's edge, the soft TLB's review. Returns 1 if the block is not to be counted (the
 * run stops, or an interrupt replaced it). Off count_block's common path. */
static __attribute__((noinline)) int boundary_due(void *uc, struct vclock *vc, uint64_t address, int partial)
{
    if ((!partial && vc->instructions >= vc->stop_at) || vc->instructions >= vc->budget_at) {
        vc->stopped = 1;              /* a deadline at or before this boundary */
        vclock_stop_before(uc, vc, address);
        return 1;
    }
    /* Deterministic mode: the PIT's edge falls due at this boundary, where the run loop
     * would have stopped for it (the same rule as stop_at): the tick path serves it. */
    if (!partial && vc->instructions >= vc->tick_at && vc->tick != NULL && tick_path_service(uc, vc->tick))
        return 1;
    /* Deterministic mode: the soft TLB's review, at block boundaries an uncut run has too.
     * Fast mode's reviews come from the host timer: no count to wait for. */
    if (!vc->deterministic || vc->ctl_tlb_flush == 0)
        vc->tlb_review_at = UINT64_MAX;
    else if (!partial && vc->instructions >= vc->tlb_review_at)
        review_tlb_deterministic(uc, vc);
    return 0;
}

/* Counts the block about to run (see "Instruction counting" above): deterministic mode
 * on every block, so its common case is a few compares, a table lookup and the stores. */
static void count_block(void *uc, uint64_t address, uint32_t size, struct vclock *vc)
{
    uint64_t icount, counted = vc->instructions;
    int covered, partial = 0;
    vc->in_block = 0;
    /* The rest of a block a stop cut (a budget, a breakpoint) starts a translation of
     * its own; the run that cut it had no boundary there, so a deadline does not stop
     * at it either: interrupts land where they would in one uncut run. */
    if (vc->partial_pc != UINT64_MAX) {
        partial = address == vc->partial_pc;
        vc->partial_pc = UINT64_MAX;
    }
    if ((counted >= vc->stop_at || counted >= vc->budget_at || counted >= vc->tick_at ||
         counted >= vc->tlb_review_at) && boundary_due(uc, vc, address, partial))
        return;
    icount = block_icount(uc, vc, address, size);
    covered = vc->all_exact || (address >= vc->exact_lo && address <= vc->exact_hi);
    if (!covered && vc->instructions + icount > vc->budget_at) {
        vc->exact_request_pc = address;   /* the budget ends inside: count this block exactly */
        vc->exact_request_size = size;
        vclock_stop_before(uc, vc, address);
        return;
    }
    vc->block_pc = address;
    vc->block_size = size;
    vc->block_start = vc->instructions;
    vc->block_position = 0;
    vc->block_covered = (uint64_t)covered;
    vc->in_block = 1;
    vc->instructions += icount;
}

/* The block hook: counts the block (see "Instruction counting" above), and is
 * the only place where a stop asked for by another thread (the host timer,
 * Ctrl-C, the wall-clock timeout) takes effect.
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
static __attribute__((noinline)) void block_attention(void *uc, uint64_t address, uint32_t size,
                                                      struct vclock *vc)
{
    /* The timer tick served in C (_tick_path.c): an interrupt delivered here replaces
     * this block (RIP is now the handler's; Unicorn goes on there). */
    if (__atomic_load_n(&vc->tick_attention, __ATOMIC_RELAXED) && !vc->stop_requested &&
        __atomic_exchange_n(&vc->tick_attention, 0, __ATOMIC_ACQ_REL) && vc->tick != NULL &&
        tick_path_service(uc, vc->tick)) {
        vc->in_block = 0;
        return;
    }
    /* The host timer's polls (fast mode), one word so that every block pays one load for
     * them all. POLL_IRQ, a request waiting while IF is clear: every poll period the timer
     * asks here whether the CPU would take it now (one RFLAGS read; the interrupt shadow
     * only when IF is set), and only then is the guest stopped for the run loop to deliver
     * it: a stop every period through Python cost ~150 us each (docs/performance.md).
     * POLL_TLB_REVIEW: the soft TLB's review time (above). */
    if (__atomic_load_n(&vc->timer_polls, __ATOMIC_RELAXED) && !vc->stop_requested) {
        uint64_t polls = __atomic_exchange_n(&vc->timer_polls, 0, __ATOMIC_ACQ_REL);
        if ((polls & POLL_TLB_REVIEW) && vc->ctl_tlb_flush != 0)
            review_tlb(uc, vc);
        if ((polls & POLL_IRQ) && vc->tick != NULL && irq_ready(uc, ((struct tick_path *)vc->tick)->irq)) {
            vc->in_block = 0;         /* the block before ran to its end */
            vc->stopped = 1;          /* a clock stop: the run loop goes round and delivers */
            vclock_stop_before(uc, vc, address);
            return;
        }
    }
    if (__atomic_load_n(&vc->async_stop, __ATOMIC_RELAXED) &&
        __atomic_exchange_n(&vc->async_stop, 0, __ATOMIC_ACQ_REL)) {
        vc->in_block = 0;             /* the block before ran to its end */
        vclock_stop_before(uc, vc, address);   /* the block's first instruction will not run */
        return;
    }
    if (!vc->counting || vc->stop_requested)
        return;
    count_block(uc, address, size, vc);
}

/* Fast mode's common case - nothing asked of the block hook, nothing counted - returns
 * after four loads and one branch, without block_attention's prologue: the function with
 * every path inline saved and restored its registers on every block, 14 % of a
 * 4-instruction loop (docs/performance.md). Deterministic mode's - only counting - goes
 * straight to count_block. */
void vclock_block(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct vclock *vc = user_data;
    uint64_t asked = __atomic_load_n(&vc->tick_attention, __ATOMIC_RELAXED) |
                     __atomic_load_n(&vc->timer_polls, __ATOMIC_RELAXED) |
                     __atomic_load_n(&vc->async_stop, __ATOMIC_RELAXED);
    if ((asked | vc->counting) == 0)
        return;
    if (asked == 0 && !vc->stop_requested)
        count_block(uc, address, size, vc);       /* deterministic mode's common case */
    else
        block_attention(uc, address, size, vc);
}

/* From a hook in front of the instruction at pc: stop emu_start there. The run loop tells
 * such a stop from a `hlt` that ended emu_start by itself (RunLoop._after_hlt). */
void vclock_stop_before(void *uc, struct vclock *vc, uint64_t pc)
{
    vc->stop_requested = 1;
    vc->stop_pc = pc;
    vc->emu_stop(uc);
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

/* A code hook on a guest call's return address (guest_call.py): ends emu_start in
 * front of it while a call runs, as any hook's stop does (the instruction is not
 * counted). In C because a Python hook cost every call a trip through the binding. */
void vclock_call_return(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct vclock *vc = user_data;
    (void)address;
    (void)size;
    if (!vc->call_active)
        return;
    vclock_stop_before(uc, vc, address);
}

/* A code hook on a hlt the guest halted at before (RunLoop learns them): the timer
 * path wakes it without a return to the run loop where it can (tick_path_wake_from_hlt).
 * Through the run loop a timer-driven idle loop cost ~100 us an interrupt. */
void vclock_hlt(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct vclock *vc = user_data;
    if (size == 1 && vc->tick != NULL)
        tick_path_wake_from_hlt(uc, vc->tick, address);
}

/* The process the timer threads belong to. getpid() is a system call (glibc caches
 * nothing since 2.25) and the threads' owner check runs on every arm: ~9 calls per guest
 * call. A forked child gets its own value (and starts its own threads). */
static pid_t current_process;

static void forked_child(void)
{
    current_process = getpid();
}

pid_t vclock_process(void)
{
    return current_process;
}

/* An importable module, so that setuptools builds and installs this file;
 * the functions above are reached through ctypes, not through Python. */
static struct PyModuleDef vclock_module = {
    PyModuleDef_HEAD_INIT, "_vclock",
    "C hooks of the virtual clock (reached through ctypes).", -1, NULL,
};

PyMODINIT_FUNC PyInit__vclock(void)
{
    current_process = getpid();
    pthread_atfork(NULL, NULL, forked_child);
    return PyModule_Create(&vclock_module);
}
