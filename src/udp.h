/* RFC 862 over UDP, answered in the main process: each datagram goes back whole to its
 * sender, unless it comes from a privileged port (echo/chargen reflection loops,
 * CVE-1999-0103) or a rate limit says no. Limits only drop or pause; they never turn the
 * service off. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define UDP_DATAGRAM_MAX 65507
/* Token buckets count "units": one per datagram plus one per started KiB. */
#define UDP_SOURCE_RATE  200u /* units per second, per source (IPv4 address, IPv6 /64) */
#define UDP_SOURCE_BURST 400u
#define UDP_GLOBAL_RATE  20000u /* units per second, all sources together */
#define UDP_GLOBAL_BURST 40000u
#define UDP_SOURCE_SLOTS 4096u /* sources tracked; colliding active sources share a bucket */

enum udp_verdict {
        UDP_ANSWER,
        UDP_DROP_PRIVILEGED, /* source port below 1024 (or 0) */
        UDP_DROP_SOURCE,     /* the source's bucket is empty */
        UDP_DROP_GLOBAL,     /* the global bucket is empty */
        UDP_DROP_TRUNCATED,  /* larger than any UDP datagram over IPv4 */
        _UDP_VERDICT_MAX,
};

struct udp;
struct listeners;

/* seed: secret for the source table's hash, so senders cannot choose collisions. */
int udp_new(uint64_t seed, uint64_t now, struct udp **ret);
void udp_free(struct udp *u);

/* Prepares every datagram listener and, when there is one, allocates the state with a
 * fresh secret in *ret (else NULL). Returns 0, or -errno after logging. */
int udp_setup(const struct listeners *listeners, uint64_t now, struct udp **ret);

/* The admission decision for one datagram; charges the buckets when it says UDP_ANSWER. */
enum udp_verdict udp_admit(struct udp *u, const struct sockaddr *peer, socklen_t peer_len, size_t n_bytes,
                           uint64_t now);

/* Reads and answers up to a batch of datagrams waiting on fd. */
void udp_serve(struct udp *u, int fd, uint64_t now);

/* True while the global bucket is empty: the caller stops polling UDP sockets (the kernel
 * drops the excess) until udp_deadline(). */
bool udp_paused(const struct udp *u, uint64_t now);
/* Logs the drops of the last interval if there were any; returns true when the counters
 * changed since the last call (for STATUS). */
bool udp_tick(struct udp *u, uint64_t now);
uint64_t udp_deadline(const struct udp *u, uint64_t now);

void udp_counts(const struct udp *u, uint64_t *ret_echoed, uint64_t *ret_dropped);
/* Adds what the image before a reload counted (its drops were logged by it). */
void udp_counts_carry(struct udp *u, uint64_t echoed, uint64_t dropped);
