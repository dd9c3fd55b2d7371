/* Unit test of clock.h: a usec deadline becomes poll()'s int milliseconds without going
 * negative or wrapping, however far away it is. */
#include <limits.h>
#include <stdint.h>

#include "clock.h"
#include "tap.h"

int main(void) {
        const uint64_t now = 1000 * USEC_PER_SEC;
        const uint64_t day = 86400 * USEC_PER_SEC;

        tap(clock_timeout_ms(UINT64_MAX, now) == -1, "no deadline: -1 (wait for an event)");
        tap(clock_timeout_ms(now, now) == 0 && clock_timeout_ms(now - 1, now) == 0,
            "a deadline now or past: 0");
        tap(clock_timeout_ms(now + 1, now) == 1 && clock_timeout_ms(now + 1000, now) == 1 &&
                    clock_timeout_ms(now + 1001, now) == 2,
            "rounded up to the next millisecond: never wakes before the deadline");
        tap(clock_timeout_ms(now + 20 * day, now) == 20 * 86400 * 1000, "20 days: exact (%d)",
            clock_timeout_ms(now + 20 * day, now));
        tap(clock_timeout_ms(now + 30 * day, now) == INT_MAX, "30 days away: INT_MAX, not negative (%d)",
            clock_timeout_ms(now + 30 * day, now));
        tap(clock_timeout_ms(now + 60 * day, now) == INT_MAX, "60 days away: INT_MAX, not wrapped (%d)",
            clock_timeout_ms(now + 60 * day, now));
        tap(clock_timeout_ms(UINT64_MAX - 1, now) == INT_MAX, "UINT64_MAX - 1: INT_MAX (%d)",
            clock_timeout_ms(UINT64_MAX - 1, now));
        tap(clock_timeout_ms(UINT64_MAX - 1, 0) == INT_MAX, "UINT64_MAX - 1 from 0: INT_MAX (%d)",
            clock_timeout_ms(UINT64_MAX - 1, 0));
        return tap_done();
}
