/* The datagram side. One buffer, one pass per wakeup, a bounded batch per socket so TCP
 * accepts and signals are never starved by a flood. */
#include "udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include "addr.h"
#include "clock.h"
#include "fork.h"
#include "listen.h"
#include "journal-ids.h"
#include "log.h"
#include "tally.h"

#define UDP_BATCH       64
#define UDP_BUFFER_SIZE 65536

struct bucket {
        uint64_t key;
        uint64_t tokens_milli; /* units * 1000 */
        uint64_t updated;
};

struct udp {
        uint64_t seed;
        struct bucket global;
        struct bucket sources[UDP_SOURCE_SLOTS];
        uint64_t n_echoed;
        uint64_t n_dropped[_UDP_VERDICT_MAX];
        uint64_t n_dropped_before; /* by the image before a reload: in STATUS, not in the log */
        struct tally drop_log;
        bool counts_changed;
        char buf[UDP_BUFFER_SIZE];
};

int udp_new(uint64_t seed, uint64_t now, struct udp **ret) {
        struct udp *u = fork_alloc_parent_only(sizeof(struct udp));

        if (!u)
                return -ENOMEM;
        u->seed = seed;
        u->global = (struct bucket){ .tokens_milli = UDP_GLOBAL_BURST * 1000ull, .updated = now };
        *ret = u;
        return 0;
}

void udp_free(struct udp *u) {
        fork_free_parent_only(u, sizeof(struct udp));
}

/* Asks for the local address of each datagram, so that answers leave from it. */
static int udp_socket_prepare(int fd, int family) {
        int one = 1;

        /* IP_PKTINFO also covers IPv4 datagrams on a dual-stack IPv6 socket. */
        if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0)
                return -errno;
        if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) < 0)
                return -errno;
        return 0;
}

int udp_setup(const struct listeners *listeners, uint64_t now, struct udp **ret) {
        uint64_t seed = 0;
        int r;

        *ret = NULL;
        for (size_t i = 0; i < listeners->n; i++) {
                const struct listener *l = &listeners->items[i];
                if (l->type != LISTENER_DGRAM)
                        continue;
                r = udp_socket_prepare(l->fd, l->family);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up %s: %m", l->name);
                if (*ret)
                        continue;
                if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
                        seed = (uint64_t)getpid() << 32; /* weaker, still per instance */
                r = udp_new(seed ^ now, now, ret);
                if (r < 0)
                        return log_error_errno(r, "Failed to allocate UDP state: %m");
        }
        return 0;
}

static void bucket_refill(struct bucket *b, uint64_t rate, uint64_t burst, uint64_t now) {
        uint64_t elapsed = now > b->updated ? now - b->updated : 0;
        uint64_t cap = burst * 1000ull;

        /* rate units/s = rate * 1000 milli-units per 1e6 us */
        if (elapsed > 10 * USEC_PER_SEC)
                b->tokens_milli = cap;
        else {
                b->tokens_milli += elapsed * rate / 1000u;
                if (b->tokens_milli > cap)
                        b->tokens_milli = cap;
        }
        b->updated = now;
}

static uint64_t cost_milli(size_t n_bytes) {
        return (1 + (n_bytes + 1023) / 1024) * 1000ull;
}

static uint16_t peer_port(const struct sockaddr *sa) {
        if (sa->sa_family == AF_INET)
                return ntohs(((const struct sockaddr_in *)sa)->sin_port);
        if (sa->sa_family == AF_INET6)
                return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
        return 0;
}

enum udp_verdict udp_admit(struct udp *u, const struct sockaddr *peer, socklen_t peer_len, size_t n_bytes,
                           uint64_t now) {
        uint64_t key, h, cost = cost_milli(n_bytes);
        struct bucket *b;

        if (n_bytes > UDP_DATAGRAM_MAX)
                return UDP_DROP_TRUNCATED;
        if (peer_port(peer) < 1024)
                return UDP_DROP_PRIVILEGED;

        key = addr_source_key(peer, peer_len);
        h = (key ^ u->seed) * 0x9e3779b97f4a7c15ull;
        b = &u->sources[(h >> 32) % UDP_SOURCE_SLOTS];
        if (b->key != key) {
                /* Another source had this slot: take it over once that one has gone quiet
                 * (its bucket full again), else share its bucket. */
                bucket_refill(b, UDP_SOURCE_RATE, UDP_SOURCE_BURST, now);
                if (b->updated == 0 || b->tokens_milli >= UDP_SOURCE_BURST * 1000ull)
                        *b = (struct bucket){ .key = key,
                                              .tokens_milli = UDP_SOURCE_BURST * 1000ull,
                                              .updated = now };
        }
        bucket_refill(b, UDP_SOURCE_RATE, UDP_SOURCE_BURST, now);
        if (b->tokens_milli < cost)
                return UDP_DROP_SOURCE;
        bucket_refill(&u->global, UDP_GLOBAL_RATE, UDP_GLOBAL_BURST, now);
        if (u->global.tokens_milli < cost)
                return UDP_DROP_GLOBAL;
        b->tokens_milli -= cost;
        u->global.tokens_milli -= cost;
        return UDP_ANSWER;
}

/* Turns the received control data (the datagram's local address) into the control data
 * that makes the answer leave from that address. Returns its length, 0 if none. */
static size_t reply_control(struct msghdr *in, char *out, size_t out_size) {
        memset(out, 0, out_size);
        for (struct cmsghdr *c = CMSG_FIRSTHDR(in); c; c = CMSG_NXTHDR(in, c)) {
                struct msghdr m = { .msg_control = out, .msg_controllen = out_size };
                struct cmsghdr *o = CMSG_FIRSTHDR(&m);

                if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                        struct in_pktinfo pi;
                        memcpy(&pi, CMSG_DATA(c), sizeof(pi));
                        pi.ipi_spec_dst = pi.ipi_addr;
                        pi.ipi_ifindex = 0;
                        *o = (struct cmsghdr){ .cmsg_level = IPPROTO_IP,
                                               .cmsg_type = IP_PKTINFO,
                                               .cmsg_len = CMSG_LEN(sizeof(pi)) };
                        memcpy(CMSG_DATA(o), &pi, sizeof(pi));
                        return CMSG_SPACE(sizeof(pi));
                }
                if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
                        struct in6_pktinfo pi;
                        memcpy(&pi, CMSG_DATA(c), sizeof(pi));
                        *o = (struct cmsghdr){ .cmsg_level = IPPROTO_IPV6,
                                               .cmsg_type = IPV6_PKTINFO,
                                               .cmsg_len = CMSG_LEN(sizeof(pi)) };
                        memcpy(CMSG_DATA(o), &pi, sizeof(pi));
                        return CMSG_SPACE(sizeof(pi));
                }
        }
        return 0;
}

void udp_serve(struct udp *u, int fd, uint64_t now) {
        for (unsigned i = 0; i < UDP_BATCH; i++) {
                struct sockaddr_storage peer;
                union {
                        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) +
                                 CMSG_SPACE(sizeof(struct in_pktinfo))];
                        struct cmsghdr align;
                } control_in, control_out;
                struct iovec iov = { .iov_base = u->buf, .iov_len = sizeof(u->buf) };
                struct msghdr msg = {
                        .msg_name = &peer,
                        .msg_namelen = sizeof(peer),
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control_in.buf,
                        .msg_controllen = sizeof(control_in.buf),
                };
                enum udp_verdict v;
                ssize_t n;

                /* MSG_TRUNC: the real length even if it did not fit (it always does). */
                n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_TRUNC);
                if (n < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                log_debug("recvmsg() on UDP socket failed: %m");
                        return;
                }
                if (msg.msg_flags & MSG_TRUNC)
                        n = UDP_DATAGRAM_MAX + 1;
                v = udp_admit(u, (struct sockaddr *)&peer, msg.msg_namelen, (size_t)n, now);
                u->counts_changed = true;
                if (v != UDP_ANSWER) {
                        u->n_dropped[v]++;
                        continue;
                }
                iov.iov_len = (size_t)n;
                msg.msg_control = control_out.buf;
                msg.msg_controllen = reply_control(&(struct msghdr){ .msg_control = control_in.buf,
                                                                     .msg_controllen = msg.msg_controllen },
                                                   control_out.buf, sizeof(control_out.buf));
                if (msg.msg_controllen == 0)
                        msg.msg_control = NULL;
                msg.msg_flags = 0;
                if (sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == n)
                        u->n_echoed++;
                else
                        u->n_dropped[UDP_DROP_GLOBAL]++; /* socket buffer full: same as over rate */
        }
}

static uint64_t dropped_total(const struct udp *u) {
        uint64_t total = 0;

        for (int v = 0; v < _UDP_VERDICT_MAX; v++)
                total += u->n_dropped[v];
        return total;
}

bool udp_paused(const struct udp *u, uint64_t now) {
        struct bucket g = u->global;

        bucket_refill(&g, UDP_GLOBAL_RATE, UDP_GLOBAL_BURST, now);
        return g.tokens_milli < cost_milli(0);
}

uint64_t udp_deadline(const struct udp *u, uint64_t now) {
        uint64_t d = tally_deadline(&u->drop_log, dropped_total(u));

        if (udp_paused(u, now) && now + 10 * USEC_PER_MSEC < d)
                d = now + 10 * USEC_PER_MSEC;
        return d;
}

/* Never inlined: the record stays off the loop's stack frame (see serve.c). */
static __attribute__((noinline)) void udp_log_dropped(const struct udp *u, uint64_t n_new) {
        static const char *const names[] = {
                [UDP_DROP_PRIVILEGED] = "ECHOD_DROPPED_PRIVILEGED",
                [UDP_DROP_SOURCE] = "ECHOD_DROPPED_SOURCE_RATE",
                [UDP_DROP_GLOBAL] = "ECHOD_DROPPED_GLOBAL",
                [UDP_DROP_TRUNCATED] = "ECHOD_DROPPED_OVERSIZED",
        };
        struct journal_record rec;

        journal_record_start(&rec);
        (void)journal_record_addf(&rec, "ECHOD_DROPPED", "%llu", (unsigned long long)n_new);
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (names[i])
                        (void)journal_record_addf(&rec, names[i], "%llu",
                                                  (unsigned long long)u->n_dropped[i]);
        log_event(
                LOG_WARNING, ECHOD_ID_UDP_DROPPED, &rec,
                "UDP: dropped %llu datagrams since the last report (in all: %llu from privileged source "
                "ports, %llu over the per-source rate, %llu over the global rate or buffer, %llu oversized)",
                (unsigned long long)n_new, (unsigned long long)u->n_dropped[UDP_DROP_PRIVILEGED],
                (unsigned long long)u->n_dropped[UDP_DROP_SOURCE],
                (unsigned long long)u->n_dropped[UDP_DROP_GLOBAL],
                (unsigned long long)u->n_dropped[UDP_DROP_TRUNCATED]);
}

bool udp_tick(struct udp *u, uint64_t now) {
        uint64_t n_new = tally_due(&u->drop_log, dropped_total(u), now);
        bool changed = u->counts_changed;

        if (n_new > 0)
                udp_log_dropped(u, n_new);
        u->counts_changed = false;
        return changed;
}

void udp_counts(const struct udp *u, uint64_t *ret_echoed, uint64_t *ret_dropped) {
        *ret_echoed = u->n_echoed;
        *ret_dropped = dropped_total(u) + u->n_dropped_before;
}

void udp_counts_carry(struct udp *u, uint64_t echoed, uint64_t dropped) {
        u->n_echoed += echoed;
        u->n_dropped_before += dropped;
}
