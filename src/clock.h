/* Monotonic time in microseconds: every deadline in echod is one of these. */
#pragma once

#include <limits.h>
#include <stdint.h>
#include <time.h>

#define USEC_PER_SEC  1000000ull
#define USEC_PER_MSEC 1000ull

static inline uint64_t clock_now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000u;
}

/* poll()'s timeout until deadline: milliseconds rounded up, 0 once it has passed, -1 (no
 * timeout) for UINT64_MAX. poll() takes an int: a deadline more than INT_MAX ms (about
 * 24.8 days) away waits INT_MAX ms, after which the caller looks again, instead of a
 * negative (forever) or wrapped value. */
static inline int clock_timeout_ms(uint64_t deadline, uint64_t now) {
        uint64_t ms;

        if (deadline == UINT64_MAX)
                return -1;
        if (deadline <= now)
                return 0;
        ms = (deadline - now) / USEC_PER_MSEC + ((deadline - now) % USEC_PER_MSEC != 0);
        return ms > INT_MAX ? INT_MAX : (int)ms;
}
