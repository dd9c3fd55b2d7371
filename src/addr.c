/* Address parsing and formatting. Only numeric hosts: echod never resolves names, so
 * nothing here blocks or depends on NSS. */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static int parse_port(const char *s, in_port_t *ret) {
        char *end;
        unsigned long v;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != '\0' || v < 1 || v > 65535)
                return -EINVAL;
        *ret = htons((in_port_t)v);
        return 0;
}

int addr_parse(const char *value, struct sockaddr_storage *ret, socklen_t *ret_len) {
        struct sockaddr_storage ss = {};
        socklen_t len;
        char host[INET6_ADDRSTRLEN + 1];
        const char *port, *colon;
        in_port_t port_n;
        size_t host_len;

        if (value[0] == '[') {
                const char *close = strchr(value, ']');
                if (!close || close[1] != ':')
                        return -EINVAL;
                host_len = (size_t)(close - value - 1);
                if (host_len == 0 || host_len >= sizeof(host))
                        return -EINVAL;
                memcpy(host, value + 1, host_len);
                host[host_len] = '\0';
                port = close + 2;
                if (parse_port(port, &port_n) < 0)
                        return -EINVAL;
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
                if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
                        return -EINVAL;
                sin6->sin6_family = AF_INET6;
                sin6->sin6_port = port_n;
                len = sizeof(*sin6);
        } else if ((colon = strchr(value, ':'))) {
                if (strchr(colon + 1, ':'))
                        return -EINVAL; /* a bare IPv6 address: brackets are required */
                host_len = (size_t)(colon - value);
                if (host_len == 0 || host_len >= sizeof(host))
                        return -EINVAL;
                memcpy(host, value, host_len);
                host[host_len] = '\0';
                if (parse_port(colon + 1, &port_n) < 0)
                        return -EINVAL;
                struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
                if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
                        return -EINVAL;
                sin->sin_family = AF_INET;
                sin->sin_port = port_n;
                len = sizeof(*sin);
        } else {
                if (parse_port(value, &port_n) < 0)
                        return -EINVAL;
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
                sin6->sin6_family = AF_INET6;
                sin6->sin6_addr = in6addr_any;
                sin6->sin6_port = port_n;
                len = sizeof(*sin6);
        }

        if (ret)
                *ret = ss;
        if (ret_len)
                *ret_len = len;
        return 0;
}

static void format_ip(const struct sockaddr *sa, char *ip, size_t ip_size, unsigned *ret_port) {
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
                inet_ntop(AF_INET, &sin->sin_addr, ip, (socklen_t)ip_size);
                *ret_port = ntohs(sin->sin_port);
        } else {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
                /* An IPv4 client of a dual-stack socket is shown as the IPv4 address. */
                if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
                        inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], ip, (socklen_t)ip_size);
                else {
                        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, (socklen_t)ip_size);
                        /* A link-local address means nothing without its interface. */
                        if (sin6->sin6_scope_id != 0 && strlen(ip) + 12 < ip_size)
                                snprintf(ip + strlen(ip), ip_size - strlen(ip), "%%%u",
                                         (unsigned)sin6->sin6_scope_id);
                }
                *ret_port = ntohs(sin6->sin6_port);
        }
}

static enum addr_log_peer log_peer = ADDR_LOG_PEER_FULL;

void addr_set_log_peer(enum addr_log_peer mode) {
        log_peer = mode;
}

void addr_format_peer_ip(const struct sockaddr *sa, char *ip, size_t size, unsigned *ret_port) {
        struct sockaddr_in6 masked;
        const char *prefix = "/48";

        if (log_peer == ADDR_LOG_PEER_FULL) {
                format_ip(sa, ip, size, ret_port);
                return;
        }
        /* A copy with the host part zeroed: /24 of IPv4 (mapped too), /48 of IPv6. */
        if (sa->sa_family == AF_INET) {
                struct sockaddr_in *sin = (struct sockaddr_in *)&masked;
                memcpy(sin, sa, sizeof(*sin));
                sin->sin_addr.s_addr &= htonl(0xffffff00u);
                prefix = "/24";
        } else {
                memcpy(&masked, sa, sizeof(masked));
                if (IN6_IS_ADDR_V4MAPPED(&masked.sin6_addr)) {
                        masked.sin6_addr.s6_addr[15] = 0;
                        prefix = "/24";
                } else
                        memset(&masked.sin6_addr.s6_addr[6], 0, 10);
                masked.sin6_scope_id = 0;
        }
        format_ip((const struct sockaddr *)&masked, ip, size, ret_port);
        if (log_peer == ADDR_LOG_PEER_NONE)
                snprintf(ip, size, "%s", ADDR_HIDDEN);
        else if (strlen(ip) + strlen(prefix) < size)
                strcat(ip, prefix);
}

void addr_format_peer(const struct sockaddr *sa, socklen_t len, char *buf, size_t size) {
        char ip[INET6_ADDRSTRLEN + 12]; /* and "%scope" */
        unsigned port;

        if (len < sizeof(sa_family_t) || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) {
                snprintf(buf, size, "unix");
                return;
        }
        addr_format_peer_ip(sa, ip, sizeof(ip), &port);
        snprintf(buf, size, "%s port %u", ip, port);
}

void addr_format_local(const struct sockaddr *sa, socklen_t len, char *buf, size_t size) {
        char ip[INET6_ADDRSTRLEN + 12];
        unsigned port;

        if (len >= sizeof(sa_family_t) && sa->sa_family == AF_UNIX) {
                const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
                size_t path_len = len - offsetof(struct sockaddr_un, sun_path);
                if (path_len == 0)
                        snprintf(buf, size, "(unnamed)");
                else if (sun->sun_path[0] == '\0') {
                        /* abstract namespace: '@' as ss(8) and systemd write it */
                        buf[0] = '@';
                        log_sanitize(buf + 1, size - 1, sun->sun_path + 1, path_len - 1);
                } else
                        log_sanitize(buf, size, sun->sun_path, path_len);
                return;
        }
        if (len < sizeof(sa_family_t) || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) {
                snprintf(buf, size, "(family %d)", len >= sizeof(sa_family_t) ? sa->sa_family : -1);
                return;
        }
        format_ip(sa, ip, sizeof(ip), &port);
        /* IPv6 in brackets, unless format_ip() showed an IPv4-mapped one as IPv4 */
        bool bracket = sa->sa_family == AF_INET6 &&
                       !IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
        snprintf(buf, size, bracket ? "[%s]:%u" : "%s:%u", ip, port);
}

/* IPv4 keys carry the ff00::/8 prefix, which is multicast in IPv6 and so never the source
 * of a connection: no IPv4 key can equal an IPv6 /64. */
#define SOURCE_V4_TAG 0xff00000000000000ull

/* fe80::/64: the link-local prefix, all of it in use (fe80::/10 allows more, unused). */
#define LINK_LOCAL_PREFIX 0xfe80000000000000ull

static bool is_link_local_64(uint64_t prefix) {
        return prefix == LINK_LOCAL_PREFIX;
}

static uint64_t load_be64(const uint8_t *p) {
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

uint64_t addr_source_key(const struct sockaddr *sa, socklen_t len) {
        if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
                return SOURCE_V4_TAG | ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(a))
                        return SOURCE_V4_TAG | (uint64_t)a->s6_addr[12] << 24 |
                               (uint64_t)a->s6_addr[13] << 16 | (uint64_t)a->s6_addr[14] << 8 |
                               a->s6_addr[15];
                if (is_link_local_64(load_be64(a->s6_addr)))
                        /* fe80::/64 is a different network on each link: the interface
                         * goes in the prefix's 48 zero bits. */
                        return LINK_LOCAL_PREFIX | ((const struct sockaddr_in6 *)sa)->sin6_scope_id;
                return load_be64(a->s6_addr);
        }
        return ADDR_SOURCE_NONE;
}

void addr_format_source(uint64_t key, char *buf, size_t size) {
        char ip[INET6_ADDRSTRLEN];

        if (key == ADDR_SOURCE_NONE)
                snprintf(buf, size, "local");
        else if (log_peer == ADDR_LOG_PEER_NONE)
                snprintf(buf, size, "%s", ADDR_HIDDEN);
        else if ((key & 0xffffffff00000000ull) == SOURCE_V4_TAG) {
                bool network = log_peer == ADDR_LOG_PEER_NETWORK;
                struct in_addr in = { .s_addr = htonl((uint32_t)key & (network ? 0xffffff00u : ~0u)) };
                inet_ntop(AF_INET, &in, ip, sizeof(ip));
                snprintf(buf, size, "%s%s", ip, network ? "/24" : "");
        } else if ((key & 0xffffffff00000000ull) == LINK_LOCAL_PREFIX && (uint32_t)key != 0)
                snprintf(buf, size, "fe80::%%%u/64", (unsigned)(uint32_t)key); /* with its interface */
        else {
                struct in6_addr in6 = {};
                bool network = log_peer == ADDR_LOG_PEER_NETWORK;
                for (int i = 0; i < (network ? 6 : 8); i++)
                        in6.s6_addr[i] = (uint8_t)(key >> (56 - 8 * i));
                inet_ntop(AF_INET6, &in6, ip, sizeof(ip));
                snprintf(buf, size, "%s/%d", ip, network ? 48 : 64);
        }
}

void addr_describe_peer(int conn_fd, const struct sockaddr *sa, socklen_t len, char *buf, size_t size) {
        struct ucred cred;
        socklen_t cred_len = sizeof(cred);

        if (len >= sizeof(sa_family_t) && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)) {
                addr_format_peer(sa, len, buf, size);
                return;
        }
        /* AF_UNIX peers have no useful address: name the process behind them. */
        if (getsockopt(conn_fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) < 0)
                snprintf(buf, size, "unix");
        else
                snprintf(buf, size, "unix pid %u uid %u", (unsigned)cred.pid, (unsigned)cred.uid);
}
