/* Unit test of refused.c: the sources named in the per-source refusal line, most refused
 * first, at most three, and a flood of distinct sources bounded in memory and text. */
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "refused.h"
#include "tap.h"

static uint64_t key_of(const char *text) {
        struct sockaddr_storage ss;
        socklen_t len = 0;

        if (addr_parse(text, &ss, &len) < 0)
                printf("# addr_parse(\"%s\") failed\n", text);
        return addr_source_key((struct sockaddr *)&ss, len);
}

static bool tap_report(struct refused *r, const char *want, const char *what) {
        char buf[512];
        bool ok;

        refused_report(r, buf, sizeof(buf));
        ok = strcmp(buf, want) == 0;
        if (!tap(ok, "%s: \"%s\"", what, want))
                printf("# got \"%s\"\n", buf);
        return ok;
}

int main(void) {
        static struct refused r; /* zero: empty */
        char buf[512], small[24];

        tap_report(&r, "", "nothing refused: nothing to name");

        for (int i = 0; i < 2; i++)
                refused_add(&r, key_of("[2001:db8::1]:7"));
        for (int i = 0; i < 10; i++)
                refused_add(&r, key_of("192.0.2.1:7"));
        tap_report(&r, ": 192.0.2.1 (10), 2001:db8::/64 (2)", "two sources, the most refused first");
        tap_report(&r, "", "the report empties the table");

        /* counts 1, 5, 3, 5, 2: the two fives in the order they came, then the three */
        static const char *const five[] = { "192.0.2.1:7", "192.0.2.2:7", "192.0.2.3:7", "192.0.2.4:7",
                                            "192.0.2.5:7" };
        static const int counts[] = { 1, 5, 3, 5, 2 };
        for (int s = 0; s < 5; s++)
                for (int i = 0; i < counts[s]; i++)
                        refused_add(&r, key_of(five[s]));
        tap_report(&r, ": 192.0.2.2 (5), 192.0.2.4 (5), 192.0.2.3 (3), and 2 more sources",
                   "five sources: the top three named, the rest counted");

        refused_add(&r, key_of("192.0.2.9:7"));
        refused_add(&r, key_of("192.0.2.9:8"));
        refused_add(&r, key_of("[::ffff:192.0.2.8]:7"));
        refused_add(&r, key_of("192.0.2.7:7"));
        refused_add(&r, key_of("192.0.2.6:7"));
        tap_report(&r, ": 192.0.2.9 (2), 192.0.2.8 (1), 192.0.2.7 (1), and 1 more source",
                   "one more source: singular; ports and IPv4-mapped do not split a source");

        /* a flood of 10000 distinct sources after one heavy one */
        for (int i = 0; i < 50; i++)
                refused_add(&r, key_of("198.51.100.1:7"));
        for (unsigned i = 0; i < 10000; i++) {
                char text[32];
                snprintf(text, sizeof(text), "10.%u.%u.%u:7", i >> 16 & 255, i >> 8 & 255, i & 255);
                refused_add(&r, key_of(text));
        }
        tap(r.n_sources == REFUSED_SOURCES_MAX && r.overflowed,
            "10001 distinct sources: the table holds %d, no more", REFUSED_SOURCES_MAX);
        refused_report(&r, buf, sizeof(buf));
        tap(strcmp(buf, ": 198.51.100.1 (50), 10.0.0.0 (1), 10.0.0.1 (1), and over 61 more sources") == 0,
            "a flood: the heavy source first, the line bounded (\"%s\")", buf);

        refused_add(&r, key_of("192.0.2.1:7"));
        refused_add(&r, key_of("192.0.2.2:7"));
        refused_report(&r, small, sizeof(small));
        tap(strlen(small) == sizeof(small) - 1 && strncmp(small, ": 192.0.2.1 (1), 192.0.", 23) == 0,
            "a small buffer: truncated, terminated (\"%s\")", small);
        return tap_done();
}
