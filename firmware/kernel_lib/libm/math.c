/* exp, log, sin, cos in double: range reduction, then series that converge
 * to double precision on the reduced range. */
#include "kernel_lib/libm/math.h"
#include <stdint.h>

#define LN2          0.69314718055994530942
#define PI           3.14159265358979323846
#define HALF_PI      1.57079632679489661923
#define EXP_OVERFLOW 709.0
#define SERIES_TERMS 24

static double scale_by_power_of_two(double value, int exponent)
{
    union { double d; uint64_t bits; } factor;

    if (exponent > 1023)
        exponent = 1023;
    if (exponent < -1022)
        return 0.0;
    factor.bits = (uint64_t)(exponent + 1023) << 52;
    return value * factor.d;
}

double k_exp(double x)
{
    double term = 1.0, sum = 1.0, reduced;
    int k;

    if (x > EXP_OVERFLOW)
        return __builtin_inf();
    if (x < -EXP_OVERFLOW)
        return 0.0;
    k = (int)(x / LN2 + (x >= 0 ? 0.5 : -0.5));       /* x = k ln2 + r, |r| <= ln2/2 */
    reduced = x - k * LN2;
    for (int n = 1; n < SERIES_TERMS; n++) {
        term *= reduced / n;
        sum += term;
    }
    return scale_by_power_of_two(sum, k);
}

double k_log(double x)
{
    union { double d; uint64_t bits; } value = {x};
    double mantissa, s, s2, term, sum;
    int exponent;

    if (x <= 0)
        return -__builtin_inf();
    exponent = (int)((value.bits >> 52) & 0x7FF) - 1023;
    value.bits = (value.bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;   /* mantissa in [1, 2) */
    mantissa = value.d;
    if (mantissa > 1.41421356237309504880) {                                   /* into [0.707, 1.414) */
        mantissa /= 2.0;
        exponent++;
    }
    s = (mantissa - 1.0) / (mantissa + 1.0);            /* log m = 2 atanh(s) = 2 (s + s^3/3 + ...) */
    s2 = s * s;
    term = s;
    sum = 0.0;
    for (int n = 1; n < 2 * SERIES_TERMS; n += 2) {
        sum += term / n;
        term *= s2;
    }
    return 2.0 * sum + exponent * LN2;
}

/* sin and cos of r with |r| <= pi/4 by their Taylor series. */
static double sin_reduced(double r)
{
    double term = r, sum = r, r2 = r * r;

    for (int n = 1; n < SERIES_TERMS / 2; n++) {
        term *= -r2 / ((2 * n) * (2 * n + 1));
        sum += term;
    }
    return sum;
}

static double cos_reduced(double r)
{
    double term = 1.0, sum = 1.0, r2 = r * r;

    for (int n = 1; n < SERIES_TERMS / 2; n++) {
        term *= -r2 / ((2 * n - 1) * (2 * n));
        sum += term;
    }
    return sum;
}

/* x = q (pi/2) + r with |r| <= pi/4; returns q mod 4. */
static int quadrant(double x, double *r)
{
    double q = x / HALF_PI;
    int64_t n = (int64_t)(q + (q >= 0 ? 0.5 : -0.5));

    *r = x - (double)n * HALF_PI;
    return (int)(n & 3);
}

double k_sin(double x)
{
    double r;

    switch (quadrant(x, &r)) {
    case 0: return sin_reduced(r);
    case 1: return cos_reduced(r);
    case 2: return -sin_reduced(r);
    default: return -cos_reduced(r);
    }
}

double k_cos(double x)
{
    double r;

    switch (quadrant(x, &r)) {
    case 0: return cos_reduced(r);
    case 1: return -sin_reduced(r);
    case 2: return -cos_reduced(r);
    default: return sin_reduced(r);
    }
}
