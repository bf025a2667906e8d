#ifndef TINYLLAMA_CHAT_H
#define TINYLLAMA_CHAT_H
#include "boot/multiboot2.h"

/* job=chat: answer the "user" module's text (and follow the optional "system"
 * module's) with the GGUF model in the "model" module, in ChatML, streaming the
 * answer to the serial port. Options: max_tokens= temp= topp= seed= ctx=
 * dot=avx2|blocks (the order quantized dot products add up in: quant.h).
 * Output: "chat: ..." lines about the model and the prompt, the answer, then
 * "\nchat: prompt N tokens in C cycles, answer M tokens in C cycles, stop: WHY".
 * Returns an EXIT_* code. */
int chat_job(const struct mb2_info *info, const char *cmdline);

/* job=chat-ready: create the model and tokenizer, then stop in kernel_ready()
 * so the host can call gguf_llama_forward_one(chat_active_model, token, pos)
 * and bpe_encode(&chat_active_tokenizer, ...). */
int chat_ready_job(const struct mb2_info *info, const char *cmdline);

#endif
