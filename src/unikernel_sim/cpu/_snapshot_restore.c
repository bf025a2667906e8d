/* A snapshot's registers and memory back in one C call, with the check that decides
 * whether the translation cache must be flushed (cpu/code_cache.py has the why).
 *
 * Through the binding a restore was four trips through ctypes (the code read, the
 * memcmp, the two context-mode switches around uc_context_restore) and a 49 KiB
 * copy of the firmware's code: ~9 us of a ~24 us restore. Here the code is read and
 * compared a page at a time in a buffer that stays in the L1 cache, and the memory
 * goes back through memory/_ram_snapshots.c. */
#include <stdint.h>
#include <string.h>

#include "_irq_delivery.h"

#define COMPARE_CHUNK 4096             /* a page: read and compared at a time          */
#define CODE_NOT_COMPARED UINT64_MAX   /* range_count: flush without comparing         */
#define RESTORE_CODE_SAME 0            /* the cached translations stay valid           */
#define RESTORE_CODE_CHANGED 1         /* flush the translation cache                  */

/* Mirrored by CodeRange in cpu/code_cache.py. */
struct code_range {
    uint64_t start;                    /* physical address of the code                 */
    uint64_t length;
    const uint8_t *saved;              /* the snapshot's copy of those bytes           */
};

typedef int (*ram_restore_fn)(void *ram, uint64_t index, uint64_t serial);
typedef int (*page_changed_fn)(const void *ram, uint64_t index, uint64_t page);

/* Mirrored by RestoreFunctions in cpu/code_cache.py: set up once per machine. */
struct restore_functions {
    uc_context_fn context_restore;     /* uc_context_restore (the context is CPU-only)               */
    uc_mem_read_fn mem_read;
    ram_restore_fn ram_restore;        /* ram_snapshots_restore (memory/_ram_snapshots.c)            */
    page_changed_fn page_changed;      /* ram_snapshots_page_changed                                 */
    void *ram;                         /* the machine's struct ram_snapshots                         */
    int64_t ram_status;                /* out: what ram_restore returned, 0 = restored               */
};

/* Mirrored by RestoreRequest in cpu/code_cache.py: one per snapshot, made at its first
 * restore (what would otherwise be five arguments converted by ctypes every time). */
struct restore_request {
    void *context;                     /* the snapshot's uc_context (CPU only)            */
    const struct code_range *ranges;   /* the code to compare, with the snapshot's bytes  */
    uint64_t count;                    /* how many; CODE_NOT_COMPARED: flush, no compare  */
    uint64_t index, serial;            /* the snapshot's memory level                     */
};

uint64_t restore_functions_size(void) { return sizeof(struct restore_functions); }
uint64_t restore_request_size(void) { return sizeof(struct restore_request); }
uint64_t code_range_size(void) { return sizeof(struct code_range); }

/* Whether RAM now differs from the saved code anywhere in ranges (also when a range
 * cannot be read: the cache is flushed rather than trusted). Only the pages written
 * since the level was taken or last restored can differ (the write protection knows
 * them): the others are not read. A written page is compared, not trusted to differ,
 * because data may share a page with code (a variable beside the text's last bytes). */
static int code_differs(void *uc, const struct restore_functions *f, const struct code_range *ranges,
                        uint64_t count, uint64_t level)
{
    uint8_t chunk[COMPARE_CHUNK];
    for (uint64_t i = 0; i < count; i++) {
        const struct code_range *r = &ranges[i];
        uint64_t done = 0;
        while (done < r->length) {
            uint64_t address = r->start + done;
            uint64_t to_page_end = COMPARE_CHUNK - address % COMPARE_CHUNK;
            uint64_t size = r->length - done < to_page_end ? r->length - done : to_page_end;
            if (f->page_changed(f->ram, level, address / COMPARE_CHUNK)) {
                if (f->mem_read(uc, address, chunk, size) != 0)
                    return 1;
                if (memcmp(chunk, r->saved + done, size) != 0)
                    return 1;
            }
            done += size;
        }
    }
    return 0;
}

/* Compare the code with the snapshot's (unless flush or r->count is CODE_NOT_COMPARED),
 * put the snapshot's memory back, then its registers. RESTORE_CODE_SAME or
 * RESTORE_CODE_CHANGED; a negative Unicorn error (-uc_err) if the registers could not
 * be restored. If the memory could not be, f->ram_status says why and nothing else was
 * done. */
int snapshot_restore(void *uc, struct restore_functions *f, const struct restore_request *r, int flush)
{
    int changed = flush || r->count == CODE_NOT_COMPARED ? RESTORE_CODE_CHANGED
                                                         : code_differs(uc, f, r->ranges, r->count, r->index);
    f->ram_status = f->ram_restore(f->ram, r->index, r->serial);
    if (f->ram_status != 0)
        return RESTORE_CODE_SAME;
    int status = f->context_restore(uc, r->context);
    return status != 0 ? -status : changed;
}
