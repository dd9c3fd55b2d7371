/* The table of refused sources (see refused.h): linear search over a few dozen entries,
 * which costs a refusal less than the accept() before it. */
#include "refused.h"

#include <stdio.h>
#include <string.h>

#include "addr.h"

void refused_add(struct refused *r, uint64_t key) {
        for (size_t i = 0; i < r->n_sources; i++)
                if (r->sources[i].key == key) {
                        r->sources[i].n++;
                        return;
                }
        if (r->n_sources == REFUSED_SOURCES_MAX) {
                r->overflowed = true;
                return;
        }
        r->sources[r->n_sources++] = (struct refused_source){ .key = key, .n = 1 };
}

/* The index of the most refused source not yet shown. */
static size_t most_refused(const struct refused *r, const bool shown[]) {
        size_t best = r->n_sources;

        for (size_t i = 0; i < r->n_sources; i++)
                if (!shown[i] && (best == r->n_sources || r->sources[i].n > r->sources[best].n))
                        best = i;
        return best;
}

void refused_report(struct refused *r, char *buf, size_t size) {
        bool shown[REFUSED_SOURCES_MAX] = { false };
        size_t n_shown = 0, off = 0;

        buf[0] = '\0';
        for (; n_shown < REFUSED_SOURCES_SHOWN && n_shown < r->n_sources && off < size; n_shown++) {
                size_t i = most_refused(r, shown);
                char source[ADDR_TEXT_MAX];

                shown[i] = true;
                addr_format_source(r->sources[i].key, source, sizeof(source));
                off += (size_t)snprintf(buf + off, size - off, "%s%s (%llu)", n_shown == 0 ? ": " : ", ",
                                        source, (unsigned long long)r->sources[i].n);
        }
        if (r->n_sources > n_shown && off < size)
                snprintf(buf + off, size - off, ", and %s%zu more source%s", r->overflowed ? "over " : "",
                         r->n_sources - n_shown, r->n_sources - n_shown == 1 && !r->overflowed ? "" : "s");
        memset(r, 0, sizeof(*r));
}
