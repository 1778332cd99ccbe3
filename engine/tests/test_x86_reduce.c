/*
 * test_x86_reduce.c - x86.h's eight-at-once horizontal sum against the one
 * it stands for: qwen_hsum8x256's lane k must be qwen_hsum256(v[k]) bit for
 * bit (the avx2 attention's scores rest on it: a prompt's and a decode
 * step's agree only if both reduce alike), on sums whose order shows in the
 * rounding, and on infinities, NaNs and signed zeros.
 */
#include "test.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include "kernels/x86/x86.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;

/* floats of wildly mixed magnitudes and signs: a different pairing of the
 * adds rounds differently */
static float
mixed(void)
{
    int e;

    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    e = (int) ((rng >> 33) % 40) - 20;
    return ldexpf((float) ((rng >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f, e);
}

static int
same_bits(float a, float b)
{
    uint32_t x, y;

    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x == y || (a != a && b != b);
}

static void
test_hsum8(void)
{
    static const float special[] = { INFINITY, -INFINITY, NAN, 0.0f, -0.0f, 1e38f, -1e38f };
    float  lanes[8][8], got[8];
    __m256 v[8];
    int    round, k, i, differ = 0, rounded_apart = 0;

    for (round = 0; round < 20000; round++) {
        for (k = 0; k < 8; k++) {
            for (i = 0; i < 8; i++) {
                lanes[k][i] = mixed();
                if (round % 7 == 0 && (rng >> 20) % 11 == 0) {
                    lanes[k][i] = special[(rng >> 24) % 7];
                }
            }
            v[k] = _mm256_loadu_ps(lanes[k]);
        }
        _mm256_storeu_ps(got, qwen_hsum8x256(v));
        for (k = 0; k < 8; k++) {
            float want = qwen_hsum256(v[k]), plain = 0.0f;

            differ += !same_bits(got[k], want);
            for (i = 0; i < 8; i++) {
                plain += lanes[k][i];
            }
            rounded_apart += !same_bits(plain, want);
        }
    }
    CHECK(differ == 0, "qwen_hsum8x256: %d of 160000 sums differ from qwen_hsum256's bits",
          differ);
    /* the data must be able to tell pairings apart, or the check above
     * proves nothing */
    CHECK(rounded_apart > 1000, "only %d of 160000 sums round differently in lane order",
          rounded_apart);
}
#pragma GCC pop_options
#endif

int
main(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        test_hsum8();
    } else {
        printf("test_x86_reduce: no AVX2 on this CPU, nothing to test\n");
    }
#else
    printf("test_x86_reduce: not an x86-64 build, nothing to test\n");
#endif
    TEST_MAIN_END();
}
