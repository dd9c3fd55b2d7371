/* Socket addresses as the user writes them ([HOST:]PORT) and as the logs show them. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#define ADDR_UNIX_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)
/* Enough for "unix pid 4294967295 uid 4294967295", "[v6%scope]:65535" and a unix path. */
#define ADDR_TEXT_MAX 160

/* Parses "PORT", "HOST:PORT" or "[IPV6]:PORT" (numeric HOST, PORT 1..65535). Without HOST
 * the result is the IPv6 wildcard, which the caller makes dual-stack. ret and ret_len may
 * be NULL to only validate. Returns 0 or -EINVAL. */
int addr_parse(const char *value, struct sockaddr_storage *ret, socklen_t *ret_len);

/* The key clients are grouped by for per-source limits: the IPv4 address (IPv4-mapped
 * IPv6 counted as IPv4), or the /64 prefix of an IPv6 address. ADDR_SOURCE_NONE for
 * families that are not limited per source (AF_UNIX). */
#define ADDR_SOURCE_NONE UINT64_MAX
uint64_t addr_source_key(const struct sockaddr *sa, socklen_t len);
/* "127.0.0.1" or "2001:db8::/64": the group a source key stands for. */
void addr_format_source(uint64_t key, char *buf, size_t size);

/* How much of a client's address the logs show (--log-peer), in text and journal fields
 * alike: all of it; its network (the /24 of IPv4, the /48 of IPv6, written with the
 * prefix length: "192.0.2.0/24"); or none ("(hidden)"). Set once at start. */
enum addr_log_peer {
        ADDR_LOG_PEER_FULL,
        ADDR_LOG_PEER_NETWORK,
        ADDR_LOG_PEER_NONE,
};
void addr_set_log_peer(enum addr_log_peer mode);
#define ADDR_HIDDEN "(hidden)"

/* The IP of an AF_INET/AF_INET6 peer as the logs show it (--log-peer applied), and its
 * port. */
void addr_format_peer_ip(const struct sockaddr *sa, char *ip, size_t size, unsigned *ret_port);

/* "127.0.0.1 port 4000", "::1 port 4000", or "unix" (the caller adds credentials): the
 * peer, as a connection's log line names it. */
void addr_format_peer(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);

/* addr_format_peer(), or for an AF_UNIX connection "unix pid N uid N" (from SO_PEERCRED):
 * the peer of conn_fd, as its log line names it. */
void addr_describe_peer(int conn_fd, const struct sockaddr *sa, socklen_t len, char *buf, size_t size);

/* "127.0.0.1:7", "[::]:7" or the AF_UNIX path (sanitised): a local address. */
void addr_format_local(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);
