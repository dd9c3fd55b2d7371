/* Unit test of addr.c: how peers are grouped for --max-per-source (IPv4-mapped IPv6 as
 * IPv4, IPv6 by /64, AF_UNIX not at all), and how addresses appear in the logs (mapped
 * addresses as IPv4, IPv6 in brackets, AF_UNIX paths with their control bytes replaced). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "addr.h"
#include "tap.h"

static bool tap_str(const char *got, const char *want, const char *what) {
        bool ok = strcmp(got, want) == 0;

        if (!tap(ok, "%s: \"%s\"", what, want))
                printf("# got \"%s\"\n", got);
        return ok;
}

/* A socket address from "HOST:PORT" or "[IPV6]:PORT", through addr_parse(). */
static socklen_t sockaddr_of(const char *text, struct sockaddr_storage *ret) {
        socklen_t len = 0;

        if (addr_parse(text, ret, &len) < 0) {
                printf("# addr_parse(\"%s\") failed\n", text);
                memset(ret, 0, sizeof(*ret));
        }
        return len;
}

static uint64_t key_of(const char *text) {
        struct sockaddr_storage ss;
        socklen_t len = sockaddr_of(text, &ss);

        return addr_source_key((struct sockaddr *)&ss, len);
}

static socklen_t sockaddr_unix(struct sockaddr_un *sun, const char *path, size_t path_len) {
        memset(sun, 0, sizeof(*sun));
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, path, path_len);
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
}

static void test_parse(void) {
        static const char *const good[] = { "7", "65535", "127.0.0.1:7", "[::1]:7", "[2001:db8::1]:65535" };
        static const char *const bad[] = {
                "",       "0",       "65536",         "+7",          " 7",      "7x",
                "::1:7",  "[::1]7",  "[::1]",         "[]:7",        ":7",      "127.0.0.1:",
                "host:7", "1.2.3:7", "[127.0.0.1]:7", "127.0.0.1:0", "[::1]:-1"
        };
        struct sockaddr_storage ss;
        socklen_t len;

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                tap(addr_parse(good[i], NULL, NULL) == 0, "parse \"%s\": accepted", good[i]);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                tap(addr_parse(bad[i], NULL, NULL) == -EINVAL, "parse \"%s\": -EINVAL", bad[i]);

        len = sockaddr_of("7", &ss);
        tap(ss.ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6) &&
                    IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr) &&
                    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == 7,
            "parse \"7\": the IPv6 wildcard, port 7");
        len = sockaddr_of("192.0.2.1:4000", &ss);
        tap(ss.ss_family == AF_INET && len == sizeof(struct sockaddr_in) &&
                    ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) == 0xc0000201u &&
                    ntohs(((struct sockaddr_in *)&ss)->sin_port) == 4000,
            "parse \"192.0.2.1:4000\": that IPv4 address and port");
}

static void test_source_key(void) {
        struct sockaddr_un sun;
        struct sockaddr_in sin = { .sin_family = AF_INET };
        socklen_t len;

        tap(key_of("192.0.2.7:1") == key_of("192.0.2.7:2"), "source: the port does not count");
        tap(key_of("192.0.2.7:1") != key_of("192.0.2.8:1"), "source: each IPv4 address is its own");
        tap(key_of("[::ffff:192.0.2.7]:1") == key_of("192.0.2.7:1"),
            "source: IPv4-mapped ::ffff:192.0.2.7 is 192.0.2.7");
        tap(key_of("[2001:db8:1:2::5]:1") == key_of("[2001:db8:1:2:ffff:ffff:ffff:ffff]:1"),
            "source: IPv6 addresses of one /64 are one source");
        tap(key_of("[2001:db8:1:2::5]:1") != key_of("[2001:db8:1:3::5]:1"),
            "source: another /64 is another source");
        tap(key_of("[::192.0.2.7]:1") != key_of("192.0.2.7:1"),
            "source: the IPv6 ::192.0.2.7 is not the IPv4 192.0.2.7");
        len = sockaddr_unix(&sun, "/run/echo.sock", sizeof("/run/echo.sock") - 1);
        tap(addr_source_key((struct sockaddr *)&sun, len) == ADDR_SOURCE_NONE,
            "source: AF_UNIX peers are not grouped");
        tap(addr_source_key((struct sockaddr *)&sin, sizeof(sa_family_t)) == ADDR_SOURCE_NONE,
            "source: a truncated address is not grouped");
}

static void test_format_source(void) {
        char buf[ADDR_TEXT_MAX];

        addr_format_source(key_of("[::ffff:192.0.2.7]:1"), buf, sizeof(buf));
        tap_str(buf, "192.0.2.7", "format source: IPv4-mapped");
        addr_format_source(key_of("[2001:db8:1:2::5]:1"), buf, sizeof(buf));
        tap_str(buf, "2001:db8:1:2::/64", "format source: IPv6");
        addr_format_source(ADDR_SOURCE_NONE, buf, sizeof(buf));
        tap_str(buf, "local", "format source: AF_UNIX");
}

/* A link-local peer as accept() gives it: with the index of the interface it came on. */
static socklen_t sockaddr_scoped(struct sockaddr_in6 *sin6, const char *ip, uint32_t scope_id) {
        memset(sin6, 0, sizeof(*sin6));
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(7);
        sin6->sin6_scope_id = scope_id;
        if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) != 1)
                printf("# inet_pton(\"%s\") failed\n", ip);
        return sizeof(*sin6);
}

static uint64_t key_scoped(const char *ip, uint32_t scope_id) {
        struct sockaddr_in6 sin6;
        socklen_t len = sockaddr_scoped(&sin6, ip, scope_id);

        return addr_source_key((struct sockaddr *)&sin6, len);
}

static void test_link_local(void) {
        struct sockaddr_in6 sin6;
        char buf[ADDR_TEXT_MAX];
        socklen_t len;

        tap(key_scoped("fe80::1", 2) != key_scoped("fe80::1", 3),
            "link-local: fe80::1 on interfaces 2 and 3 are two sources");
        tap(key_scoped("fe80::1", 2) == key_scoped("fe80::abcd:1", 2),
            "link-local: one interface's fe80::/64 is one source");
        tap(key_scoped("fe80::1", 2) != key_of("[fe80::1]:7") &&
                    key_scoped("fe80::1", 2) != key_of("[::2]:7"),
            "link-local: a scoped key is no other IPv6 /64");
        tap(key_scoped("2001:db8::1", 2) == key_of("[2001:db8::1]:7"),
            "a global address: the scope id does not count");
        addr_format_source(key_scoped("fe80::1", 2), buf, sizeof(buf));
        tap_str(buf, "fe80::%2/64", "format source: link-local with its interface index");
        addr_format_source(key_scoped("fe80::1", 4294967295u), buf, sizeof(buf));
        tap_str(buf, "fe80::%4294967295/64", "format source: the largest interface index");
        len = sockaddr_scoped(&sin6, "fe80::1", 2);
        addr_format_peer((struct sockaddr *)&sin6, len, buf, sizeof(buf));
        tap_str(buf, "fe80::1%2 port 7", "peer: link-local with its interface index");
        len = sockaddr_scoped(&sin6, "fe80:1:2:3:4:5:6:7", 4294967295u);
        addr_format_local((struct sockaddr *)&sin6, len, buf, sizeof(buf));
        tap_str(buf, "[fe80:1:2:3:4:5:6:7%4294967295]:7", "local: the longest scoped address fits");
}

/* How a peer (its log line) or a local address (the "ready:" line) reads. */
static const struct ip_format {
        bool local;
        const char *addr, *want, *what;
} ip_formats[] = {
        { false, "192.0.2.7:4000", "192.0.2.7 port 4000", "peer: IPv4" },
        { false, "[::ffff:192.0.2.7]:4000", "192.0.2.7 port 4000", "peer: IPv4-mapped as IPv4" },
        { false, "[2001:db8::1]:7", "2001:db8::1 port 7", "peer: IPv6" },
        { true, "127.0.0.1:7", "127.0.0.1:7", "local: IPv4" },
        { true, "[::1]:7", "[::1]:7", "local: IPv6 in brackets" },
        { true, "[::ffff:127.0.0.1]:7", "127.0.0.1:7", "local: IPv4-mapped as IPv4, no brackets" },
};

static void test_format_peer_local(void) {
        static const char control_path[] = "/run/e\n\x1b[31mvil\xff.sock";
        struct sockaddr_storage ss;
        struct sockaddr_un sun;
        char buf[ADDR_TEXT_MAX] = "";
        socklen_t len;

        for (size_t i = 0; i < sizeof(ip_formats) / sizeof(ip_formats[0]); i++) {
                const struct ip_format *f = &ip_formats[i];

                len = sockaddr_of(f->addr, &ss);
                (f->local ? addr_format_local : addr_format_peer)((struct sockaddr *)&ss, len, buf,
                                                                  sizeof(buf));
                tap_str(buf, f->want, f->what);
        }

        len = sockaddr_unix(&sun, "/run/echo.sock", sizeof("/run/echo.sock") - 1);
        addr_format_local((struct sockaddr *)&sun, len, buf, sizeof(buf));
        tap_str(buf, "/run/echo.sock", "local: AF_UNIX path");
        len = sockaddr_unix(&sun, "\0echo", 5);
        addr_format_local((struct sockaddr *)&sun, len, buf, sizeof(buf));
        tap_str(buf, "@echo", "local: abstract AF_UNIX name with '@'");
        len = sockaddr_unix(&sun, "", 0);
        addr_format_local((struct sockaddr *)&sun, len, buf, sizeof(buf));
        tap_str(buf, "(unnamed)", "local: unnamed AF_UNIX socket");
        len = sockaddr_unix(&sun, control_path, sizeof(control_path) - 1);
        addr_format_local((struct sockaddr *)&sun, len, buf, sizeof(buf));
        tap_str(buf, "/run/e??[31mvil?.sock", "local: control and non-ASCII bytes of a path replaced");
        len = sockaddr_unix(&sun, "/run/echo.sock", sizeof("/run/echo.sock") - 1);
        addr_format_local((struct sockaddr *)&sun, len, buf, 5);
        tap_str(buf, "/run", "local: truncated to the buffer, terminated");
}

int main(void) {
        test_parse();
        test_source_key();
        test_format_source();
        test_link_local();
        test_format_peer_local();
        return tap_done();
}
