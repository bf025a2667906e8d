/* Multiboot2 header (Multiboot2 specification, section 3.1).
 * Must be 8-byte aligned and lie within the first 32 KiB of the image. */
#include "boot/multiboot2.h"

    .section .multiboot2, "a"
    .balign 8
mb2_header_start:
    .long MB2_HEADER_MAGIC                      /* magic */
    .long MB2_ARCHITECTURE_I386                 /* architecture: 32-bit protected mode */
    .long mb2_header_end - mb2_header_start     /* header_length */
    .long -(MB2_HEADER_MAGIC + MB2_ARCHITECTURE_I386 + (mb2_header_end - mb2_header_start))

    /* Information request (section 3.1.4): without these the kernel cannot run. */
    .balign 8
info_request_start:
    .short MB2_HEADER_TAG_INFORMATION_REQUEST
    .short 0                                    /* flags: required */
    .long info_request_end - info_request_start
    .long MB2_TAG_TYPE_CMDLINE
    .long MB2_TAG_TYPE_MODULE
    .long MB2_TAG_TYPE_MMAP
info_request_end:

    /* End tag */
    .balign 8
    .short MB2_HEADER_TAG_END
    .short 0
    .long 8
mb2_header_end:
