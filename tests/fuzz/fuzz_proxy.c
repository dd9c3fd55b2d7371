/* libFuzzer target: proxy_parse(), the PROXY protocol header parser, on bytes a balancer
 * (or anyone reaching a --proxy-protocol listener) sends.
 *
 * The input is the bytes received so far, copied to a buffer of exactly that size, so a
 * read past the end is an ASan report. Invariants checked:
 * - a whole header is at most PROXY_HEADER_MAX bytes (PROXY_V1_MAX for version 1, which
 *   ends in CRLF), and never longer than what was given;
 * - it parses the same from exactly its own bytes (the payload after it plays no part),
 *   and one byte short of it the answer is "need more";
 * - a claimed address is a whole sockaddr_in or sockaddr_in6 of that family;
 * - a verdict is final: if the first half of the input is already refused, the whole
 *   input is refused for the same reason; if it needs more, it is shorter than a header
 *   may be. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define CHECK(cond)                                                                                          \
        do {                                                                                                 \
                if (!(cond)) {                                                                               \
                        fprintf(stderr, "fuzz_proxy: check failed: %s (line %d)\n", #cond, __LINE__);        \
                        abort();                                                                             \
                }                                                                                            \
        } while (0)

static enum proxy_status parse_copy(const uint8_t *data, size_t size, struct proxy_header *ret) {
        uint8_t *copy = malloc(size ? size : 1);
        enum proxy_status st;

        CHECK(copy != NULL);
        memcpy(copy, data, size);
        st = proxy_parse(copy, size, ret);
        free(copy);
        return st;
}

static void check_done(const uint8_t *data, size_t size, const struct proxy_header *h) {
        struct proxy_header again;

        CHECK(h->length > 0 && h->length <= size && h->length <= PROXY_HEADER_MAX);
        if (data[0] == 'P') {
                CHECK(h->length <= PROXY_V1_MAX);
                CHECK(data[h->length - 2] == '\r' && data[h->length - 1] == '\n');
        }
        CHECK(h->address_len == 0 ||
              (h->source.ss_family == AF_INET && h->destination.ss_family == AF_INET &&
               h->address_len == sizeof(struct sockaddr_in)) ||
              (h->source.ss_family == AF_INET6 && h->destination.ss_family == AF_INET6 &&
               h->address_len == sizeof(struct sockaddr_in6)));

        CHECK(parse_copy(data, h->length, &again) == PROXY_DONE);
        CHECK(again.length == h->length && again.address_len == h->address_len);
        CHECK(memcmp(&again.source, &h->source, h->address_len) == 0);
        CHECK(memcmp(&again.destination, &h->destination, h->address_len) == 0);
        CHECK(parse_copy(data, h->length - 1, &again) == PROXY_NEED_MORE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct proxy_header h, half;
        enum proxy_status st = parse_copy(data, size, &h), st_half;

        CHECK(st < _PROXY_STATUS_MAX);
        if (st == PROXY_DONE)
                check_done(data, size, &h);
        if (st == PROXY_NEED_MORE)
                CHECK(size < PROXY_HEADER_MAX);

        st_half = parse_copy(data, size / 2, &half);
        if (st_half != PROXY_NEED_MORE && st_half != PROXY_DONE)
                CHECK(st == st_half);
        if (st_half == PROXY_DONE)
                CHECK(st == PROXY_DONE && h.length == half.length);
        return 0;
}
