/* A prototype of snapshot memory without Unicorn's copy-on-write regions, for
 * bench/dirty_page_snapshots.py: guest RAM is our own mapping (uc_mem_map_ptr),
 * write-protected when a snapshot is taken; the first store to a page faults, this
 * SIGSEGV handler saves the page and makes it writable, and the store runs again
 * (JIT code, QEMU's helpers and host writes alike). A restore copies the saved pages
 * back and write-protects them again: no memory map is rebuilt, no TLB is flushed.
 *
 * Not used by the simulator (docs/performance.md says why: every page made writable
 * between read-only ones is a kernel VMA of its own, and vm.max_map_count bounds them;
 * a SIGSEGV handler must also coexist with Python's faulthandler). One region, one
 * snapshot level, a fixed page budget: enough to measure. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE_SIZE 4096

static uint8_t *ram;                  /* the guest RAM mapping                          */
static uint64_t ram_size;
static uint64_t *dirty_pages;         /* page numbers saved since the snapshot          */
static uint8_t *saved;                /* their contents at the snapshot, in that order  */
static uint64_t dirty_count, dirty_capacity;
static struct sigaction previous;     /* the handler before ours (faults not ours)      */
uint64_t dirty_faults;                /* statistics                                      */

static void on_fault(int signal_number, siginfo_t *info, void *context)
{
    uint8_t *address = info->si_addr;
    (void)signal_number;
    (void)context;
    if (address >= ram && address < ram + ram_size && dirty_count < dirty_capacity) {
        uint64_t page = (uint64_t)(address - ram) / PAGE_SIZE;
        memcpy(saved + dirty_count * PAGE_SIZE, ram + page * PAGE_SIZE, PAGE_SIZE);
        dirty_pages[dirty_count++] = page;
        mprotect(ram + page * PAGE_SIZE, PAGE_SIZE, PROT_READ | PROT_WRITE);
        dirty_faults++;
        return;                       /* the faulting store runs again */
    }
    sigaction(SIGSEGV, &previous, NULL);   /* not ours: the previous handler sees it again */
}

/* Watch [base, base + size); pages and store hold `capacity` entries. 0 on success. */
int dirty_watch(uint8_t *base, uint64_t size, uint64_t *pages, uint8_t *store, uint64_t capacity)
{
    struct sigaction action;
    ram = base;
    ram_size = size;
    dirty_pages = pages;
    saved = store;
    dirty_capacity = capacity;
    dirty_count = 0;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGSEGV, &action, &previous);
}

/* Take the snapshot: the whole region read-only, nothing saved. 0 on success. */
int dirty_snapshot(void)
{
    dirty_count = 0;
    return mprotect(ram, ram_size, PROT_READ);
}

/* Back to the snapshot: every saved page copied back, newest first, and read-only
 * again. Returns the pages restored. */
uint64_t dirty_restore(void)
{
    uint64_t count = dirty_count;
    for (uint64_t i = count; i-- > 0;) {
        memcpy(ram + dirty_pages[i] * PAGE_SIZE, saved + i * PAGE_SIZE, PAGE_SIZE);
        mprotect(ram + dirty_pages[i] * PAGE_SIZE, PAGE_SIZE, PROT_READ);
    }
    dirty_count = 0;
    return count;
}
