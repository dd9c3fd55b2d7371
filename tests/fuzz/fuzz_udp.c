/* libFuzzer target: udp_admit(), the admission decision of every datagram.
 *
 * Input: 8 bytes of hash seed, then records of 6 bytes: source selector, source port (2),
 * size (2, scaled so the whole 0..UDP_DATAGRAM_MAX+ range is reachable), time step. Sources
 * come from a small pool (IPv4, IPv6 in one /64 and in another, IPv4-mapped, AF_UNIX) or
 * from the input itself, so that they repeat and collide.
 * Invariants checked on every decision:
 * - a source port below 1024 is never answered (UDP_DROP_PRIVILEGED), nor a datagram
 *   larger than UDP_DATAGRAM_MAX (UDP_DROP_TRUNCATED);
 * - per source group (addr_source_key) and globally, the units answered over any window of
 *   length W never exceed burst + rate * W: checked exactly with a reference token bucket
 *   per group that starts full and must never be overdrawn by the answers;
 * - limits never disable the service: after BURST/RATE seconds of silence from everyone,
 *   the next valid datagram is answered. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "addr.h"
#include "udp.h"

#define CHECK(cond)                                                                                          \
        do {                                                                                                 \
                if (!(cond)) {                                                                               \
                        fprintf(stderr, "fuzz_udp: check failed: %s (line %d, step %zu)\n", #cond, __LINE__, \
                                step);                                                                       \
                        abort();                                                                             \
                }                                                                                            \
        } while (0)

#define MAX_GROUPS 512
#define USEC       1000000ull

/* Exact reference bucket in units * microseconds (no rounding). */
struct ref {
        uint64_t key;
        uint64_t level; /* units * 1e6 */
        uint64_t updated;
};

static void ref_refill(struct ref *r, uint64_t rate, uint64_t burst, uint64_t now) {
        uint64_t cap = burst * USEC;
        uint64_t elapsed = now - r->updated;

        if (elapsed > 100 * USEC)
                r->level = cap;
        else {
                r->level += elapsed * rate;
                if (r->level > cap)
                        r->level = cap;
        }
        r->updated = now;
}

static uint64_t cost_units(size_t n) {
        return 1 + (n + 1023) / 1024;
}

static socklen_t make_source(const uint8_t *sel, uint16_t port, struct sockaddr_storage *ss) {
        static const char *const v4[] = { "127.0.0.1", "127.0.0.2", "10.0.0.1", "192.0.2.7" };
        static const char *const v6[] = {
                "::1", "2001:db8::1", "2001:db8::2", "2001:db8:0:1::1", "::ffff:127.0.0.1", "fe80::1"
        };
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        uint8_t s = sel[0];

        memset(ss, 0, sizeof(*ss));
        switch (s % 8) {
        case 0:
        case 1:
        case 2:
                sin->sin_family = AF_INET;
                sin->sin_port = htons(port);
                inet_pton(AF_INET, v4[(s >> 3) % 4], &sin->sin_addr);
                return sizeof(*sin);
        case 3:
        case 4:
                sin6->sin6_family = AF_INET6;
                sin6->sin6_port = htons(port);
                inet_pton(AF_INET6, v6[(s >> 3) % 6], &sin6->sin6_addr);
                return sizeof(*sin6);
        case 5: /* an IPv4 address from the next bytes: many sources */
                sin->sin_family = AF_INET;
                sin->sin_port = htons(port);
                memcpy(&sin->sin_addr, sel + 1, 4);
                return sizeof(*sin);
        case 6: /* an IPv6 address made from the next bytes */
                sin6->sin6_family = AF_INET6;
                sin6->sin6_port = htons(port);
                for (int i = 0; i < 16; i++)
                        sin6->sin6_addr.s6_addr[i] = sel[1 + i % 5] ^ (uint8_t)(s * i);
                if (sin6->sin6_addr.s6_addr[0] == 0xff)
                        sin6->sin6_addr.s6_addr[0] = 0x20; /* never the source of a packet */
                return sizeof(*sin6);
        default: {
                struct sockaddr_un *sun = (struct sockaddr_un *)ss;
                sun->sun_family = AF_UNIX;
                return sizeof(sa_family_t);
        }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct ref groups[MAX_GROUPS];
        struct ref global;
        struct udp *u;
        size_t n_groups = 0, step = 0;
        uint64_t seed = 0, now = 1000 * USEC, last_datagram = 0;

        if (size < 8)
                return 0;
        memcpy(&seed, data, 8);
        data += 8;
        size -= 8;
        if (udp_new(seed, now, &u) < 0)
                return 0;
        global = (struct ref){ .level = UDP_GLOBAL_BURST * USEC, .updated = now };

        for (; size >= 6; data += 6, size -= 6, step++) {
                struct sockaddr_storage ss;
                uint16_t port = (uint16_t)(data[1] << 8 | data[2]);
                size_t n = (size_t)(data[3] << 8 | data[4]);
                uint8_t t = data[5];
                socklen_t len;
                enum udp_verdict v;
                uint64_t key, cost;
                struct ref *g = NULL;

                /* sizes: mostly small, sometimes near or over the maximum */
                if (n & 0x8000)
                        n = UDP_DATAGRAM_MAX - 64 + (n & 0x7f);
                /* time: 0, microseconds, milliseconds, or long pauses */
                if (t < 64)
                        now += 0;
                else if (t < 128)
                        now += t;
                else if (t < 250)
                        now += (uint64_t)(t - 127) * 1000;
                else
                        now += (uint64_t)(t - 249) * USEC;
                len = make_source(data, port, &ss);

                bool quiet = last_datagram == 0 ||
                             now - last_datagram >= (uint64_t)UDP_SOURCE_BURST * USEC / UDP_SOURCE_RATE + 1;
                bool quiet_global =
                        last_datagram == 0 ||
                        now - last_datagram >= (uint64_t)UDP_GLOBAL_BURST * USEC / UDP_GLOBAL_RATE + 1;

                v = udp_admit(u, (struct sockaddr *)&ss, len, n, now);
                last_datagram = now;
                CHECK(v >= UDP_ANSWER && v < _UDP_VERDICT_MAX);

                uint16_t p = ss.ss_family == AF_INET || ss.ss_family == AF_INET6 ? port : 0;
                if (n > UDP_DATAGRAM_MAX) {
                        CHECK(v == UDP_DROP_TRUNCATED);
                        continue;
                }
                if (p < 1024) {
                        CHECK(v == UDP_DROP_PRIVILEGED);
                        continue;
                }
                CHECK(v != UDP_DROP_PRIVILEGED && v != UDP_DROP_TRUNCATED);
                if (quiet && quiet_global)
                        CHECK(v == UDP_ANSWER);

                key = addr_source_key((struct sockaddr *)&ss, len);
                for (size_t i = 0; i < n_groups; i++)
                        if (groups[i].key == key) {
                                g = &groups[i];
                                break;
                        }
                if (!g) {
                        if (n_groups == MAX_GROUPS)
                                break;
                        g = &groups[n_groups++];
                        *g = (struct ref){ .key = key, .level = UDP_SOURCE_BURST * USEC, .updated = now };
                }
                ref_refill(g, UDP_SOURCE_RATE, UDP_SOURCE_BURST, now);
                ref_refill(&global, UDP_GLOBAL_RATE, UDP_GLOBAL_BURST, now);
                if (v != UDP_ANSWER)
                        continue;
                cost = cost_units(n) * USEC;
                /* Answered: the reference buckets must have had the tokens. */
                CHECK(g->level >= cost);
                CHECK(global.level >= cost);
                g->level -= cost;
                global.level -= cost;
        }
        udp_free(u);
        return 0;
}
