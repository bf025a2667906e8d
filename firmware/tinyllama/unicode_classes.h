/* Unicode classes for the pre-tokenizer: sorted, inclusive code point ranges
 * (generated: unicode_classes.c). */
#ifndef TINYLLAMA_UNICODE_CLASSES_H
#define TINYLLAMA_UNICODE_CLASSES_H
#include <stdint.h>

struct code_point_range {
    uint32_t first;
    uint32_t last;
};

extern const struct code_point_range unicode_letter_ranges[];   /* \p{L} */
extern const int unicode_letter_range_count;
extern const struct code_point_range unicode_number_ranges[];   /* \p{N} */
extern const int unicode_number_range_count;
extern const struct code_point_range unicode_space_ranges[];    /* \s    */
extern const int unicode_space_range_count;

#endif
