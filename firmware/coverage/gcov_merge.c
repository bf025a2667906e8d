/* gcc --coverage records, in each object's gcov_info, the libgcov function that merges
 * each kind of counter into an existing .gcda file at program exit. A freestanding
 * kernel has no exit and no files: the host reads the counters out of guest memory
 * (unikernel_sim/coverage/gcda.py) and writes the .gcda itself, so these are never
 * called. They exist for the link, and their presence in gcov_info.merge[] tells the
 * host which kinds of counters an object has (only arcs, for --coverage). Built only
 * with COVERAGE=1 (this directory is outside the normal build's sources). */
#include <stdint.h>

typedef int64_t gcov_type;

void __gcov_merge_add(gcov_type *counters, unsigned count)
{
    (void)counters;
    (void)count;
}
