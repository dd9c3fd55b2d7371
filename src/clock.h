/* Monotonic time in microseconds: every deadline in echod is one of these. */
#pragma once

#include <stdint.h>
#include <time.h>

#define USEC_PER_SEC  1000000ull
#define USEC_PER_MSEC 1000ull

static inline uint64_t clock_now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000u;
}
