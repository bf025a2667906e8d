/* Choosing the next token (llama2.c run.c's sampler). */
#ifndef TINYLLAMA_SAMPLER_H
#define TINYLLAMA_SAMPLER_H
#include <stdint.h>

struct tinyllama_sampler {
    int32_t vocab_size;
    float temperature;          /* 0: greedy                            */
    float topp;                 /* nucleus threshold; <= 0 or >= 1: off */
    uint64_t rng_state;         /* xorshift* state (the seed)           */
    float *probabilities;       /* (vocab_size) work buffer             */
    int32_t *indices;           /* (vocab_size) work buffer             */
};

/* Returns 0, or -1 if the heap cannot hold the work buffers. */
int sampler_init(struct tinyllama_sampler *s, int32_t vocab_size, float temperature, float topp, uint64_t seed);
int32_t sampler_sample(struct tinyllama_sampler *s, float *logits);
int32_t sampler_argmax(const float *values, int32_t count);
uint32_t sampler_random_u32(uint64_t *state);
float sampler_random_f32(uint64_t *state);

#endif
