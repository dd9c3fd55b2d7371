/* TAP output of the C unit tests: one "ok N - what" or "not ok N - what" line per check,
 * diagnostics as "# " lines, the plan at the end (tap_done(), which main() returns: 1 if
 * any check failed). */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

static unsigned tap_n_test;
static unsigned tap_n_failed;

__attribute__((format(printf, 2, 3))) static inline bool tap(bool ok, const char *fmt, ...) {
        va_list ap;

        tap_n_test++;
        if (!ok)
                tap_n_failed++;
        printf("%s %u - ", ok ? "ok" : "not ok", tap_n_test);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
        return ok;
}

static inline int tap_done(void) {
        printf("1..%u\n", tap_n_test);
        return tap_n_failed > 0;
}
