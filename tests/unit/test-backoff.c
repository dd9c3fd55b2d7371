/* Unit test of backoff.c and tally.h, the two ways the accept loop keeps a failure or a flood
 * from turning into a spin or a flood of log lines: the pause after failed accept() or
 * fork() calls (10 ms doubling to 1 s, one line when an episode starts and one when it
 * ends) and counts reported at most every 10 s. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "capture.h"
#include "clock.h"
#include "backoff.h"
#include "log.h"
#include "tally.h"
#include "tap.h"

static unsigned count_lines(const char *s) {
        unsigned n = 0;

        for (; *s; s++)
                n += *s == '\n';
        return n;
}

static void test_backoff(void) {
        static const uint64_t want_ms[] = { 10, 20, 40, 80, 160, 320, 640, 1000, 1000 };
        struct backoff b = {};
        uint64_t now = 100 * USEC_PER_SEC;
        bool schedule_ok = true;
        char log[2048];

        tap(backoff_paused_until(&b, now) == 0, "no failure: not paused");
        capture_begin();
        for (size_t i = 0; i < sizeof(want_ms) / sizeof(want_ms[0]); i++) {
                backoff_record(&b, i == 0 ? EMFILE : -EMFILE, "accept()", now);
                if (backoff_paused_until(&b, now) != now + want_ms[i] * USEC_PER_MSEC) {
                        schedule_ok = false;
                        printf("# failure %zu: paused %lld us, want %llu ms\n", i + 1,
                               (long long)(backoff_paused_until(&b, now) - now),
                               (unsigned long long)want_ms[i]);
                }
                now += want_ms[i] * USEC_PER_MSEC;
        }
        capture_end(log, sizeof(log));
        tap(schedule_ok, "failures in a row pause for 10, 20, 40 ... 640 ms, then 1 s each");
        tap(count_lines(log) == 1 &&
                    strstr(log, "accept() failed: Too many open files; pausing new connections") != NULL,
            "one log line for the episode, with the cause");
        if (count_lines(log) != 1)
                printf("# %s", log);
        tap(backoff_paused_until(&b, now) == 0 && backoff_paused_until(&b, now - 1) == now,
            "the pause is over at its end, not before");

        capture_begin();
        backoff_end(&b);
        backoff_end(&b);
        capture_end(log, sizeof(log));
        tap(count_lines(log) == 1 && strstr(log, "Serving again after 9 failed attempts") != NULL,
            "a success ends the episode with one line that counts the failures");
        if (count_lines(log) != 1)
                printf("# %s", log);

        capture_begin();
        backoff_record(&b, -EAGAIN, "fork()", now);
        capture_end(log, sizeof(log));
        tap(backoff_paused_until(&b, now) == now + 10 * USEC_PER_MSEC && strstr(log, "fork() failed") != NULL,
            "the next episode starts again at 10 ms, with its own line");

        tap(backoff_accept_is_transient(ECONNABORTED) && backoff_accept_is_transient(EPROTO) &&
                    backoff_accept_is_transient(EINTR),
            "a connection aborted before accept() is not a failure of the listener");
        tap(!backoff_accept_is_transient(EMFILE) && !backoff_accept_is_transient(ENFILE) &&
                    !backoff_accept_is_transient(ENOBUFS) && !backoff_accept_is_transient(ENOMEM),
            "out of descriptors or memory is a failure: it pauses");
}

static void test_tally(void) {
        struct tally t = {};
        uint64_t now = 100 * USEC_PER_SEC;

        tap(tally_due(&t, 0, now) == 0 && tally_deadline(&t, 0) == UINT64_MAX,
            "nothing counted: nothing due");
        tap(tally_due(&t, 1, now) == 1, "the first one is reported at once");
        tap(tally_due(&t, 5, now + 1) == 0 && tally_deadline(&t, 5) == now + TALLY_INTERVAL,
            "more within the interval wait for its end");
        tap(tally_due(&t, 5, now + TALLY_INTERVAL - 1) == 0, "still nothing just before it");
        tap(tally_due(&t, 5, now + TALLY_INTERVAL) == 4, "at its end: the 4 since the last report");
        tap(tally_deadline(&t, 5) == UINT64_MAX, "all reported: no deadline");
        tap(tally_due(&t, 5, now + 5 * TALLY_INTERVAL) == 0, "no new ones: no line, however late");
        tap(tally_due(&t, 6, now + 5 * TALLY_INTERVAL) == 1,
            "after a quiet interval a new one is reported at once");
}

int main(void) {
        log_setup(LOG_INFO);
        test_backoff();
        test_tally();
        return tap_done();
}
