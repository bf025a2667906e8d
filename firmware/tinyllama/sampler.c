#include "tinyllama/sampler.h"
#include "tinyllama/model.h"
#include "kernel_lib/memory/malloc_bump.h"

#define XORSHIFT_MULTIPLIER 0x2545F4914F6CDD1Dull
#define FLOAT_MANTISSA_SPAN 16777216.0f

int sampler_init(struct tinyllama_sampler *s, int32_t vocab_size, float temperature, float topp, uint64_t seed)
{
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->topp = topp;
    s->rng_state = seed;
    s->probabilities = calloc((size_t)vocab_size, sizeof(float));
    s->indices = calloc((size_t)vocab_size, sizeof(int32_t));
    return s->probabilities && s->indices ? 0 : -1;
}

uint32_t sampler_random_u32(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * XORSHIFT_MULTIPLIER) >> 32);
}

float sampler_random_f32(uint64_t *state)
{
    return (float)(sampler_random_u32(state) >> 8) / FLOAT_MANTISSA_SPAN;
}

int32_t sampler_argmax(const float *values, int32_t count)
{
    int32_t best = 0;

    for (int32_t i = 1; i < count; i++)
        if (values[i] > values[best])
            best = i;
    return best;
}

static int32_t sample_multinomial(const float *probabilities, int32_t count, float coin)
{
    float cdf = 0.0f;

    for (int32_t i = 0; i < count; i++) {
        cdf += probabilities[i];
        if (coin < cdf)
            return i;
    }
    return count - 1;
}

/* Sorts indices by probability, descending, ties by index (insertion sort on
 * the few candidates that pass the cutoff). */
static void sort_candidates(int32_t *indices, int32_t count, const float *probabilities)
{
    for (int32_t i = 1; i < count; i++) {
        int32_t index = indices[i], j = i - 1;
        while (j >= 0 && (probabilities[indices[j]] < probabilities[index]
                          || (probabilities[indices[j]] == probabilities[index] && indices[j] > index))) {
            indices[j + 1] = indices[j];
            j--;
        }
        indices[j + 1] = index;
    }
}

static int32_t sample_topp(struct tinyllama_sampler *s, float coin)
{
    const float *p = s->probabilities;
    float cutoff = (1.0f - s->topp) / (float)(s->vocab_size - 1);
    float cumulative = 0.0f, r, cdf = 0.0f;
    int32_t count = 0, last;

    for (int32_t i = 0; i < s->vocab_size; i++)
        if (p[i] >= cutoff)
            s->indices[count++] = i;
    sort_candidates(s->indices, count, p);
    last = count - 1;
    for (int32_t i = 0; i < count; i++) {
        cumulative += p[s->indices[i]];
        if (cumulative > s->topp) {
            last = i;
            break;
        }
    }
    r = coin * cumulative;
    for (int32_t i = 0; i <= last; i++) {
        cdf += p[s->indices[i]];
        if (r < cdf)
            return s->indices[i];
    }
    return s->indices[last];
}

int32_t sampler_sample(struct tinyllama_sampler *s, float *logits)
{
    float coin;

    if (s->temperature == 0.0f)
        return sampler_argmax(logits, s->vocab_size);
    for (int32_t i = 0; i < s->vocab_size; i++)
        s->probabilities[i] = logits[i] / s->temperature;
    tinyllama_softmax(s->probabilities, s->vocab_size);
    coin = sampler_random_f32(&s->rng_state);
    if (s->topp <= 0.0f || s->topp >= 1.0f)
        return sample_multinomial(s->probabilities, s->vocab_size, coin);
    return sample_topp(s, coin);
}
