/* Who was refused over --max-per-source since the last report: a small fixed table of
 * sources with counts, so that the rate-limited line names the top few. A flood of
 * distinct sources fills the table and is then only counted: neither memory nor the line
 * grows with it. Parent-only state (it lives in the accept loop's). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REFUSED_SOURCES_MAX   64
#define REFUSED_SOURCES_SHOWN 3

struct refused {
        struct refused_source {
                uint64_t key; /* addr_source_key() */
                uint64_t n;
        } sources[REFUSED_SOURCES_MAX];
        size_t n_sources;
        bool overflowed; /* a source found the table full: n_sources is a lower bound */
};

/* Counts one refusal from source key. */
void refused_add(struct refused *r, uint64_t key);

/* Writes the sources counted since the last call, most refused first (ties: first
 * refused first), at most REFUSED_SOURCES_SHOWN of them, into buf, e.g.
 * ": 192.0.2.1 (10), 2001:db8::/64 (2), and 3 more sources" ("" if none), and empties
 * the table. */
void refused_report(struct refused *r, char *buf, size_t size);
