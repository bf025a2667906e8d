/* The alignment guard's decode of the kernel's SSE functions in one C call
 * (cpu/x86_lite_decoder.py, LiteDecoder.find_all).
 *
 * The guard decodes whole functions (~6,900 instructions for the bundled firmware) to
 * keep the few dozen with an xmmword operand. From Python that was one cs_disasm per
 * function, then a copy of the decoded array and a search of its operand texts, with
 * the GIL taken between functions: ~1 ms of Python on top of capstone's ~1.8 ms, and
 * no way to overlap it with the loader (a helper thread waited for the GIL at every
 * function). Here capstone is called through the function pointers the Python side
 * resolved, the texts are searched in place, and only the matches are copied out;
 * ctypes releases the GIL for the whole call.
 *
 * The cs_insn layout is capstone 5's; the Python side checks cs_version and a known
 * decoding before it uses this, as it does for its own reads of the array. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* struct cs_insn, capstone 5 (capstone.h); mirrored by _CsInsn in x86_lite_decoder.py. */
struct cs_insn5 {
    unsigned int id;
    uint64_t address;
    uint16_t size;
    uint8_t bytes[24];
    char mnemonic[32];
    char op_str[160];
    void *detail;
};

typedef size_t (*cs_disasm_fn)(size_t handle, const uint8_t *code, size_t size, uint64_t address,
                               size_t count, struct cs_insn5 **instructions);
typedef void (*cs_free_fn)(struct cs_insn5 *instructions, size_t count);

/* Mirrored by LiteRegion in x86_lite_decoder.py. */
struct lite_region {
    const uint8_t *code;
    uint64_t size;
    uint64_t address;                  /* of code's first byte                               */
    uint64_t decoded;                  /* out: bytes decoded from the start, up to the first
                                          byte that is no instruction (size when all)       */
};

/* Mirrored by LiteMatch in x86_lite_decoder.py. */
struct lite_match {
    uint64_t region;                   /* index into the regions                             */
    uint64_t address;
    uint64_t size;
    char mnemonic[32];
    char op_str[160];
};

/* Decodes every region and writes each instruction whose operand text holds needle
 * into matches, in region and address order, at most capacity of them. Returns how
 * many there were (more than capacity: the caller asks again with room for all). */
uint64_t lite_find_all(cs_disasm_fn disasm, cs_free_fn release, size_t handle,
                       struct lite_region *regions, uint64_t region_count, const char *needle,
                       struct lite_match *matches, uint64_t capacity)
{
    uint64_t found = 0;
    for (uint64_t r = 0; r < region_count; r++) {
        struct lite_region *region = &regions[r];
        struct cs_insn5 *instructions = NULL;
        size_t count = disasm(handle, region->code, region->size, region->address, 0, &instructions);
        region->decoded = 0;
        if (count == 0)
            continue;                  /* the first bytes are no instruction (or no memory) */
        const struct cs_insn5 *last = &instructions[count - 1];
        region->decoded = last->address + last->size - region->address;
        for (size_t i = 0; i < count; i++) {
            const struct cs_insn5 *instruction = &instructions[i];
            if (memchr(instruction->op_str, 0, sizeof instruction->op_str) == NULL
                || strstr(instruction->op_str, needle) == NULL)
                continue;
            if (found < capacity) {
                struct lite_match *match = &matches[found];
                match->region = r;
                match->address = instruction->address;
                match->size = instruction->size;
                memcpy(match->mnemonic, instruction->mnemonic, sizeof match->mnemonic);
                memcpy(match->op_str, instruction->op_str, sizeof match->op_str);
            }
            found++;
        }
        release(instructions, count);
    }
    return found;
}

/* For the Python mirrors' size check (cpu/native.py, check_mirror). */
uint64_t lite_region_size(void) { return sizeof(struct lite_region); }
uint64_t lite_match_size(void) { return sizeof(struct lite_match); }
