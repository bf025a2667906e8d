/* Snapshots of guest memory without Unicorn's copy-on-write regions
 * (memory/ram_snapshots.py has the why and the measurements).
 *
 * Guest memory is our own mapping (uc_mem_map_ptr). Taking a snapshot write-protects
 * the pages written since the previous one; the first store to a protected page
 * faults, and the SIGSEGV handler below copies the page into the newest snapshot's
 * store, makes it writable and returns: the store runs again, whether it came from
 * translated code, one of QEMU's helpers or a host write through uc_mem_write.
 * Restoring copies the saved pages back and protects them again. Nothing is unmapped
 * or remapped, so QEMU's memory map and TLB stay as they are.
 *
 * Snapshots form one chain of levels, as Unicorn's do: restoring a level drops every
 * newer one. A level keeps each page's content at the time the level was taken (or
 * last restored); a page saved at several levels goes back to the oldest copy at or
 * above the level restored.
 *
 * Two stamps keep a restore from copying pages nobody touched: every change of a page
 * (a fault, a copy back) gives it a new `last_write` stamp, and a saved copy records in
 * `synced` when RAM last held exactly it. A copy is stale, and goes back, only when
 * the page changed after that.
 *
 * A page written before each of two restores in a row (a guest call's stack, the
 * heap's header) stays writable: each restore copies it back unasked, which costs less
 * than its fault and two mprotects would. Such a page may change without a fault, so
 * it is given a new stamp before the next restore or snapshot looks at stamps.
 *
 * The kernel keeps each run of writable pages between read-only ones as a VMA of its
 * own, and vm.max_map_count (65,530 by default) bounds them per process; past
 * MAX_WRITABLE_RUNS runs a fault makes its whole 2 MiB block writable instead of one
 * page, which bounds the count by the number of blocks. */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE_SIZE 4096
#define BLOCK_PAGES 512                /* a 2 MiB block: what one fault unprotects past the run limit */
#define MAX_REGIONS 4                  /* guest RAM, the VGA framebuffer                               */
#define MAX_WATCHED 4096               /* machines alive at once in one process                        */
#define MAX_WRITABLE_RUNS 16384        /* a quarter of vm.max_map_count's default                      */
#define SLOTS_PER_CHUNK 64             /* pages a level's store grows by                               */
#define HOT_STREAK 2                   /* restores in a row that found a page written: keep it writable */
#define MAX_HOT 64                     /* pages kept writable across restores (256 KiB copied each)     */

#define SNAP_OK 0
#define SNAP_STALE_LEVEL (-1)          /* the level was dropped by the restore of an older one   */
#define SNAP_NO_MEMORY (-2)            /* mmap refused a level's bookkeeping                     */
#define SNAP_PROTECT_FAILED (-3)       /* mprotect failed (errno in last_errno)                  */

/* A level's saved pages grow SLOTS_PER_CHUNK at a time, allocated in the handler with
 * mmap (async-signal-safe; malloc is not). */
struct chunk {
    uint64_t page[SLOTS_PER_CHUNK];             /* which page each slot holds          */
    uint64_t synced[SLOTS_PER_CHUNK];           /* stamp when RAM last held the copy   */
    uint8_t data[SLOTS_PER_CHUNK][PAGE_SIZE];   /* (slot, PAGE_SIZE) the copies        */
};

struct level {
    uint64_t serial;                   /* unique: a snapshot's proof that its level still exists */
    uint64_t count;                    /* pages saved                                           */
    uint64_t since;                    /* stamp when RAM last held this level's content         */
    struct chunk **chunks;             /* (pages / SLOTS_PER_CHUNK + 1) pointers                */
};

/* One entry per page of all regions. */
struct page_arrays {
    uint8_t *writable;                 /* (pages) 1: not write-protected                         */
    uint64_t *last_write;              /* (pages) stamp of the page's latest change              */
    uint64_t *top_tag;                 /* (pages) the newest level's serial where it saved the page */
    uint64_t *unprotected;             /* (pages) the pages made writable since the last protect */
    uint8_t *streak;                   /* (pages) restores in a row that found the page written  */
};

struct region {
    uint8_t *host;                     /* our mapping                                   */
    uint64_t size;
    uint64_t first_page;               /* its pages' numbers start here                 */
};

struct ram_snapshots {
    struct region regions[MAX_REGIONS];
    uint64_t region_count;
    uint64_t pages;                    /* pages of all regions                                  */
    struct page_arrays page;           /* what is known of each page                            */
    uint64_t unprotected_count;        /* entries in page.unprotected                           */
    uint64_t hot_count;                /* the first of them, kept writable by the last protect  */
    uint64_t runs;                     /* maximal runs of writable pages (kernel VMAs)          */
    uint64_t stamp;
    struct level *levels;
    uint64_t level_count, level_capacity;
    uint64_t next_serial;
    uint64_t faults;                   /* statistics: pages saved by the handler                */
    uint64_t restored;                 /* pages copied back by restores                         */
    int64_t last_errno;
};

static struct ram_snapshots *watched[MAX_WATCHED];   /* the first watched_count are live */
static int watched_count;
static struct sigaction previous_action;    /* the handler before ours: faults not ours go there */

/* Zeroed memory near hint (NULL: where the kernel likes), or NULL. */
static void *map_anonymous_at(void *hint, uint64_t size)
{
    void *p = mmap(hint, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void *map_anonymous(uint64_t size)
{
    return map_anonymous_at(NULL, size);
}

/* Guest RAM is mapped from here upwards, far from the shared libraries: Linux places
 * mappings top-down below them, and hundreds of MiB of guest RAM between libunicorn and
 * the engines' translation buffers pushed the third 512 MiB machine's buffer more than
 * 2 GiB from libunicorn's code, out of reach of the 32-bit call displacement QEMU's
 * code generator uses for helpers (every helper call then goes through a register;
 * cpu/engine.py, docs/unicorn-quirks.md). The address is a hint: if it is taken the
 * kernel chooses, as before. */
#define GUEST_RAM_AREA 0x100000000000ull       /* 16 TiB: above the heap, below the libraries */
#define GUEST_RAM_ALIGN (1ull << 30)           /* each region starts on a 1 GiB boundary     */
static uint64_t next_guest_ram = GUEST_RAM_AREA;

static void *map_guest_memory(uint64_t size)
{
    void *hint = (void *)(uintptr_t)__atomic_fetch_add(&next_guest_ram,
                                                       (size + GUEST_RAM_ALIGN - 1) / GUEST_RAM_ALIGN * GUEST_RAM_ALIGN,
                                                       __ATOMIC_RELAXED);
    return map_anonymous_at(hint, size);
}

static uint64_t round_pages(uint64_t size)
{
    return (size + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
}

/* The region holding page (its bounds: neighbours across regions are no run). */
static const struct region *region_of(const struct ram_snapshots *s, uint64_t page)
{
    for (uint64_t r = 0; r < s->region_count; r++) {
        const struct region *g = &s->regions[r];
        if (page >= g->first_page && page < g->first_page + g->size / PAGE_SIZE)
            return g;
    }
    return NULL;
}

static uint8_t *page_address(const struct ram_snapshots *s, uint64_t page)
{
    const struct region *g = region_of(s, page);
    return g == NULL ? NULL : g->host + (page - g->first_page) * PAGE_SIZE;
}

/* Bytes of a level's table of chunk pointers: enough chunks for every page. */
static uint64_t chunk_table_bytes(const struct ram_snapshots *s)
{
    return round_pages((s->pages / SLOTS_PER_CHUNK + 1) * sizeof(struct chunk *));
}

static void write_message(const char *text)
{
    ssize_t ignored = write(STDERR_FILENO, text, strlen(text));
    (void)ignored;
}

/* --- the newest level's store ---------------------------------------------------- */

static struct chunk *chunk_for_slot(struct level *l, uint64_t slot, int allocate)
{
    struct chunk **where = &l->chunks[slot / SLOTS_PER_CHUNK];
    if (*where == NULL && allocate)
        *where = map_anonymous(sizeof(struct chunk));
    return *where;
}

/* Save page's current content in the newest level unless it is there already. 0, or
 * SNAP_NO_MEMORY. */
static int save_in_top(struct ram_snapshots *s, uint64_t page)
{
    struct level *top = &s->levels[s->level_count - 1];
    if (s->page.top_tag[page] == top->serial)
        return SNAP_OK;
    struct chunk *c = chunk_for_slot(top, top->count, 1);
    if (c == NULL)
        return SNAP_NO_MEMORY;
    uint64_t i = top->count % SLOTS_PER_CHUNK;
    memcpy(c->data[i], page_address(s, page), PAGE_SIZE);
    c->page[i] = page;
    s->page.top_tag[page] = top->serial;
    top->count++;
    s->faults++;
    c->synced[i] = ++s->stamp;         /* RAM holds the copy now...                 */
    return SNAP_OK;
}

/* Mark page writable in the bookkeeping (the caller calls mprotect). */
static void note_writable(struct ram_snapshots *s, uint64_t page)
{
    const struct region *g = region_of(s, page);
    int left = page > g->first_page && s->page.writable[page - 1];
    int right = page + 1 < g->first_page + g->size / PAGE_SIZE && s->page.writable[page + 1];
    s->runs = s->runs + 1 - left - right;
    s->page.writable[page] = 1;
    s->page.unprotected[s->unprotected_count++] = page;
    s->page.last_write[page] = ++s->stamp;  /* ...and is about to change: the copy is stale */
}

/* Make [first, first + count) writable, saving each protected page first. 0, or a
 * negative SNAP_ code. */
static int unprotect_pages(struct ram_snapshots *s, uint64_t first, uint64_t count)
{
    for (uint64_t p = first; p < first + count; p++) {
        if (s->page.writable[p])
            continue;
        int status = save_in_top(s, p);
        if (status != SNAP_OK)
            return status;
        note_writable(s, p);
    }
    if (mprotect(page_address(s, first), count * PAGE_SIZE, PROT_READ | PROT_WRITE) != 0) {
        s->last_errno = errno;
        return SNAP_PROTECT_FAILED;
    }
    return SNAP_OK;
}

/* --- the fault handler ------------------------------------------------------------- */

static struct ram_snapshots *owner_of(const uint8_t *address, uint64_t *page)
{
    for (int w = 0; w < watched_count; w++) {
        struct ram_snapshots *s = watched[w];
        for (uint64_t r = 0; r < s->region_count; r++) {
            const struct region *g = &s->regions[r];
            if (address >= g->host && address < g->host + g->size) {
                *page = g->first_page + (uint64_t)(address - g->host) / PAGE_SIZE;
                return s;
            }
        }
    }
    return NULL;
}

static void pass_on(void)
{
    /* Not ours (or nothing can be done): the previous handler sees the fault again when
     * the instruction re-runs; with the default action, the process dies of it. */
    sigaction(SIGSEGV, &previous_action, NULL);
}

static void on_fault(int signal_number, siginfo_t *info, void *context)
{
    uint64_t page = 0;
    (void)signal_number;
    (void)context;
    struct ram_snapshots *s = owner_of(info->si_addr, &page);
    if (s == NULL || s->page.writable[page] || s->level_count == 0) {
        pass_on();
        return;
    }
    uint64_t first = page, count = 1;
    if (s->runs >= MAX_WRITABLE_RUNS) {
        const struct region *g = region_of(s, page);
        uint64_t region_pages = g->size / PAGE_SIZE;
        uint64_t offset = (page - g->first_page) / BLOCK_PAGES * BLOCK_PAGES;
        first = g->first_page + offset;
        count = region_pages - offset < BLOCK_PAGES ? region_pages - offset : BLOCK_PAGES;
    }
    int status = unprotect_pages(s, first, count);
    if (status == SNAP_OK)
        return;                        /* the store runs again */
    write_message(status == SNAP_NO_MEMORY
                  ? "unisim: out of memory saving a guest page for a snapshot\n"
                  : "unisim: mprotect failed making a guest page writable after a snapshot\n");
    pass_on();
}

/* Put our handler in front of whatever SIGSEGV handler is there now (Python's
 * faulthandler, for one, may have been enabled after us). 0, or -errno. */
static int ensure_handler(void)
{
    struct sigaction current;
    if (sigaction(SIGSEGV, NULL, &current) != 0)
        return -errno;
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_fault)
        return 0;
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_fault;
    ours.sa_flags = SA_SIGINFO;        /* SIGSEGV blocked inside: a fault in here kills, not recurses */
    sigemptyset(&ours.sa_mask);
    previous_action = current;
    if (sigaction(SIGSEGV, &ours, NULL) != 0)
        return -errno;
    return 0;
}

/* --- protecting ------------------------------------------------------------------- */

/* Write-protect the pages made writable since the last time, except, when keep_serial
 * is not 0, up to MAX_HOT pages saved in that level that were written before each of
 * its latest HOT_STREAK restores: those stay writable and every restore copies them
 * back (a 4 KiB copy is cheaper than a fault and an mprotect, ~4 us on this VM). 0, or
 * SNAP_PROTECT_FAILED. */
static int protect_all(struct ram_snapshots *s, uint64_t keep_serial)
{
    uint64_t i = 0, kept = 0;
    int status = SNAP_OK;
    while (i < s->unprotected_count) {
        uint64_t first = s->page.unprotected[i];
        if (keep_serial != 0 && kept < MAX_HOT && s->page.top_tag[first] == keep_serial
                && s->page.streak[first] >= HOT_STREAK) {
            s->page.unprotected[kept++] = first;            /* stays writable, stays listed */
            i++;
            continue;
        }
        uint64_t count = 1;
        while (i + count < s->unprotected_count && s->page.unprotected[i + count] == first + count
               && region_of(s, first + count) == region_of(s, first))
            count++;
        if (mprotect(page_address(s, first), count * PAGE_SIZE, PROT_READ) != 0) {
            s->last_errno = errno;
            status = SNAP_PROTECT_FAILED;
        }
        for (uint64_t p = first; p < first + count; p++)
            s->page.writable[p] = 0;
        i += count;
    }
    s->unprotected_count = kept;
    s->hot_count = kept;
    s->runs = kept;                                    /* at most one run each */
    return status;
}

/* The pages kept writable may have changed without a fault: give each a new
 * last_write stamp, so that every level's copy of them counts as stale. */
static void stamp_hot(struct ram_snapshots *s)
{
    for (uint64_t i = 0; i < s->hot_count; i++)
        s->page.last_write[s->page.unprotected[i]] = ++s->stamp;
}

/* --- levels ----------------------------------------------------------------------- */

static void free_level(struct ram_snapshots *s, struct level *l)
{
    for (uint64_t c = 0; c * SLOTS_PER_CHUNK < l->count; c++)     /* chunks are used in order */
        munmap(l->chunks[c], sizeof(struct chunk));
    munmap(l->chunks, chunk_table_bytes(s));
    l->chunks = NULL;
    l->count = 0;
}

/* Copy a saved page back, writing through a temporarily writable page if need be. */
static int copy_back(struct ram_snapshots *s, struct chunk *c, uint64_t i)
{
    uint64_t page = c->page[i];
    if (!s->page.writable[page]) {
        if (mprotect(page_address(s, page), PAGE_SIZE, PROT_READ | PROT_WRITE) != 0) {
            s->last_errno = errno;
            return SNAP_PROTECT_FAILED;
        }
        s->page.writable[page] = 1;
        s->page.unprotected[s->unprotected_count++] = page;
    }
    memcpy(page_address(s, page), c->data[i], PAGE_SIZE);
    s->page.last_write[page] = ++s->stamp;
    s->restored++;
    return SNAP_OK;
}

/* --- the interface (ctypes; memory/ram_snapshots.py) ------------------------------- */

struct ram_snapshots *ram_snapshots_new(void)
{
    struct ram_snapshots *s = map_anonymous(round_pages(sizeof *s));
    if (s == NULL)
        return NULL;
    if (watched_count == MAX_WATCHED) {
        munmap(s, round_pages(sizeof *s));
        return NULL;
    }
    watched[watched_count++] = s;
    return s;
}

static void unmap_page_arrays(struct page_arrays *a, uint64_t pages)
{
    if (a->writable) munmap(a->writable, round_pages(pages));
    if (a->last_write) munmap(a->last_write, round_pages(pages * 8));
    if (a->top_tag) munmap(a->top_tag, round_pages(pages * 8));
    if (a->unprotected) munmap(a->unprotected, round_pages(pages * 8));
    if (a->streak) munmap(a->streak, round_pages(pages));
    memset(a, 0, sizeof *a);
}

/* Zeroed arrays for pages pages, every page writable. 0, or -1 (errno says why). */
static int map_page_arrays(struct page_arrays *a, uint64_t pages)
{
    a->writable = map_anonymous(round_pages(pages));
    a->last_write = map_anonymous(round_pages(pages * 8));
    a->top_tag = map_anonymous(round_pages(pages * 8));
    a->unprotected = map_anonymous(round_pages(pages * 8));
    a->streak = map_anonymous(round_pages(pages));
    if (!a->writable || !a->last_write || !a->top_tag || !a->unprotected || !a->streak) {
        int error = errno;
        unmap_page_arrays(a, pages);
        errno = error;
        return -1;
    }
    memset(a->writable, 1, pages);             /* nothing is protected before a snapshot */
    return 0;
}

/* Allocate size bytes of guest memory (zeroed, committed lazily) and watch them; the
 * address, or NULL (errno says why). Only before the first snapshot. */
void *ram_snapshots_add_region(struct ram_snapshots *s, uint64_t size)
{
    if (s->region_count >= MAX_REGIONS || s->level_count != 0 || size % PAGE_SIZE != 0) {
        errno = EINVAL;
        return NULL;
    }
    uint8_t *host = map_guest_memory(size);
    if (host == NULL)
        return NULL;
    uint64_t pages = s->pages + size / PAGE_SIZE;
    struct page_arrays arrays;
    if (map_page_arrays(&arrays, pages) != 0) {
        int error = errno;
        munmap(host, size);
        errno = error;
        return NULL;
    }
    unmap_page_arrays(&s->page, s->pages);         /* the arrays for fewer pages */
    s->page = arrays;
    s->regions[s->region_count++] = (struct region){host, size, s->pages};
    s->pages = pages;
    return host;
}

/* A new newest level; writes from now on save pages in it. Its serial (> 0), or a
 * negative SNAP_ code. */
int64_t ram_snapshots_take(struct ram_snapshots *s)
{
    int handler = ensure_handler();
    if (handler != 0) {
        s->last_errno = -handler;
        return SNAP_PROTECT_FAILED;
    }
    stamp_hot(s);
    if (s->level_count == s->level_capacity) {
        uint64_t capacity = s->level_capacity ? 2 * s->level_capacity : 16;
        struct level *grown = map_anonymous(round_pages(capacity * sizeof(struct level)));
        if (grown == NULL)
            return SNAP_NO_MEMORY;
        if (s->levels != NULL) {
            memcpy(grown, s->levels, s->level_count * sizeof(struct level));
            munmap(s->levels, round_pages(s->level_capacity * sizeof(struct level)));
        }
        s->levels = grown;
        s->level_capacity = capacity;
    }
    struct level *l = &s->levels[s->level_count];
    l->chunks = map_anonymous(chunk_table_bytes(s));
    if (l->chunks == NULL)
        return SNAP_NO_MEMORY;
    l->count = 0;
    l->serial = ++s->next_serial;
    l->since = ++s->stamp;
    s->level_count++;
    /* A page is saved in the newest level where top_tag holds its serial: a new
     * serial empties that map without touching it. */
    if (s->level_count == 1) {
        /* The first level: every page is writable, none listed. Protect all regions. */
        for (uint64_t r = 0; r < s->region_count; r++) {
            if (mprotect(s->regions[r].host, s->regions[r].size, PROT_READ) != 0) {
                s->last_errno = errno;
                return SNAP_PROTECT_FAILED;
            }
        }
        memset(s->page.writable, 0, s->pages);
        s->runs = 0;
        return (int64_t)l->serial;
    }
    return protect_all(s, 0) == SNAP_OK ? (int64_t)l->serial : SNAP_PROTECT_FAILED;
}

/* Back to level `index` (0 = the oldest) if its serial is still `serial`: every page
 * written since goes back, newer levels are dropped. SNAP_OK or a negative SNAP_ code. */
int ram_snapshots_restore(struct ram_snapshots *s, uint64_t index, uint64_t serial)
{
    if (index >= s->level_count || s->levels[index].serial != serial)
        return SNAP_STALE_LEVEL;
    stamp_hot(s);                      /* (no fault here: pages are made writable before a copy) */
    int status = SNAP_OK, was_newest = index == s->level_count - 1;
    for (uint64_t j = s->level_count - 1; j > index; j--) {     /* newer levels: all back, then gone */
        struct level *l = &s->levels[j];
        for (uint64_t slot = 0; slot < l->count && status == SNAP_OK; slot++) {
            struct chunk *c = chunk_for_slot(l, slot, 0);
            status = copy_back(s, c, slot % SLOTS_PER_CHUNK);
        }
        free_level(s, l);
    }
    s->level_count = index + 1;
    struct level *l = &s->levels[index];
    for (uint64_t slot = 0; slot < l->count && status == SNAP_OK; slot++) {
        struct chunk *c = chunk_for_slot(l, slot, 0);
        uint64_t i = slot % SLOTS_PER_CHUNK, page = c->page[i];
        if (s->page.writable[page] || s->page.last_write[page] >= c->synced[i]) {
            status = copy_back(s, c, i);
            c->synced[i] = ++s->stamp;
            s->page.streak[page] += s->page.streak[page] < UINT8_MAX;
        } else {
            s->page.streak[page] = 0;                        /* untouched: RAM still holds the copy */
        }
        if (!was_newest)
            s->page.top_tag[page] = l->serial;               /* this level is the newest again */
    }
    int protected = protect_all(s, l->serial);
    l->since = ++s->stamp;
    return status != SNAP_OK ? status : protected;
}

/* Unwatch and free everything, guest memory included: only once the engine that
 * used the memory is closed. */
void ram_snapshots_free(struct ram_snapshots *s)
{
    for (int w = 0; w < watched_count; w++) {
        if (watched[w] == s) {
            watched[w] = watched[--watched_count];
            break;
        }
    }
    while (s->level_count > 0)
        free_level(s, &s->levels[--s->level_count]);
    if (s->levels != NULL)
        munmap(s->levels, round_pages(s->level_capacity * sizeof(struct level)));
    for (uint64_t r = 0; r < s->region_count; r++)
        munmap(s->regions[r].host, s->regions[r].size);
    unmap_page_arrays(&s->page, s->pages);
    munmap(s, round_pages(sizeof *s));
}

/* Whether RAM page `page` (a guest-physical page number in the first region, guest
 * RAM) may differ from what it held when level `index` was taken or last restored: it
 * was written since, or is writable now. 1 also for a level that no longer exists. */
int ram_snapshots_page_changed(const struct ram_snapshots *s, uint64_t index, uint64_t page)
{
    if (index >= s->level_count || s->region_count == 0 || page >= s->regions[0].size / PAGE_SIZE)
        return 1;
    return s->page.writable[page] || s->page.last_write[page] > s->levels[index].since;
}

/* Put the write-fault handler back in front if another was installed since (Python's
 * faulthandler.enable() after a snapshot, say): called at every run's start. 0, or
 * -errno. */
int ram_snapshots_ensure_handler(const struct ram_snapshots *s)
{
    return s->level_count == 0 ? 0 : ensure_handler();
}

/* Statistics and checks for the host: levels alive, pages saved by faults, pages
 * restored, writable runs, the latest errno. */
void ram_snapshots_stats(const struct ram_snapshots *s, uint64_t out[5])
{
    out[0] = s->level_count;
    out[1] = s->faults;
    out[2] = s->restored;
    out[3] = s->runs;
    out[4] = (uint64_t)s->last_errno;
}

static struct PyModuleDef ram_snapshots_module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_ram_snapshots",
    .m_doc = "Snapshots of guest memory by write protection (reached through ctypes).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__ram_snapshots(void)
{
    return PyModule_Create(&ram_snapshots_module);
}
