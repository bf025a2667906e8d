#ifndef TINYLLAMA_JOB_H
#define TINYLLAMA_JOB_H
#include "boot/multiboot2.h"

/* job=llama: generate text with the "model" and "tokenizer" modules, as
 * llama2.c's run does, options from the command line (steps= temp= topp=
 * seed= seq_len= prompt=, prompt last). Returns an EXIT_* code. */
int tinyllama_job(const struct mb2_info *info, const char *cmdline);

/* job=llama-ready: create the model, then stop in kernel_ready() so the host
 * can call tinyllama_forward(tinyllama_active_model, token, pos). */
int tinyllama_ready_job(const struct mb2_info *info, const char *cmdline);

#endif
