/* The few libm functions the inference kernels need, freestanding.
 * Computed in double and rounded once, so each float result is within an
 * ulp or so of the correctly rounded value (what glibc gives llama2.c). */
#ifndef KERNEL_LIB_LIBM_MATH_H
#define KERNEL_LIB_LIBM_MATH_H

double k_exp(double x);
double k_log(double x);
double k_sin(double x);
double k_cos(double x);

static inline float k_expf(float x) { return (float)k_exp(x); }
static inline float k_sqrtf(float x) { return __builtin_sqrtf(x); }   /* sqrtss */
static inline float k_powf(float base, float exponent) { return (float)k_exp(exponent * k_log(base)); }
static inline float k_sinf(float x) { return (float)k_sin(x); }
static inline float k_cosf(float x) { return (float)k_cos(x); }

#endif
