/* The command line: getopt_long over a table that also produces --help, so the two cannot
 * disagree. Every value is checked here; nothing is opened or started. */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "config.h"
#include "log.h"

#define ARG_LOG_LEVEL      0x100
#define ARG_PROXY_PROTOCOL 0x101
#define ARG_LOG_PEER       0x102
#define ARG_CHECK          0x103

static const struct option long_options[] = {
        { "listen", required_argument, NULL, 'l' },
        { "listen-udp", required_argument, NULL, 'u' },
        { "max-clients", required_argument, NULL, 'c' },
        { "max-per-source", required_argument, NULL, 's' },
        { "idle-timeout", required_argument, NULL, 't' },
        { "drain-timeout", required_argument, NULL, 'd' },
        { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
        { "log-peer", required_argument, NULL, ARG_LOG_PEER },
        { "proxy-protocol", optional_argument, NULL, ARG_PROXY_PROTOCOL },
        { "check", no_argument, NULL, ARG_CHECK },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        {},
};

/* The leading ':' makes getopt tell a missing value from an unknown option. */
static const char short_options[] = ":l:u:c:s:t:d:hV";

static const char help_text[] =
        "Usage: echod [OPTION]...\n"
        "RFC 862 echo service: every byte a client sends comes back. Each TCP client is\n"
        "served by a process of its own; UDP datagrams are answered in place.\n"
        "\n"
        "Sockets come from systemd (echo.socket) or from the options below.\n"
        "  -l, --listen [HOST:]PORT|PATH  TCP listener (an AF_UNIX stream socket when the\n"
        "                                 value contains '/'); repeatable\n"
        "  -u, --listen-udp [HOST:]PORT   UDP listener; repeatable\n"
        "  -c, --max-clients N            concurrent clients (default 1024, 1..1000000)\n"
        "  -s, --max-per-source N         concurrent connections per client address\n"
        "                                 (default 0: no cap)\n"
        "  -t, --idle-timeout DURATION    close a connection that makes no progress\n"
        "                                 (default 300 s; 0: never)\n"
        "  -d, --drain-timeout DURATION   on stop, how long clients may finish\n"
        "                                 (default 5 s, at most 1 h)\n"
        "      --proxy-protocol[=NAME]    TCP listeners (with NAME: only the passed sockets\n"
        "                                 named NAME) expect a PROXY protocol v1 or v2\n"
        "                                 header first and use the client address in it\n"
        "      --log-level LEVEL          err, warning, notice, info (default) or debug\n"
        "      --log-peer full|network|none  client addresses in the logs: all of them\n"
        "                                 (default), their /24 (IPv4) or /48 (IPv6), or none\n"
        "      --check                    check that echod can start with these options\n"
        "                                 (the start-up self-test), open no socket, exit\n"
        "                                 0 if so; a reload runs it on the new binary\n"
        "  -h, --help                     show this help and exit\n"
        "  -V, --version                  show the version and exit\n"
        "\n"
        "HOST is a numeric address, an IPv6 one in brackets; without HOST echod listens on\n"
        "all addresses (IPv4 and IPv6). DURATION is an integer with an optional unit: us, ms,\n"
        "s, min or h (none: seconds).\n"
        "SIGHUP (systemctl reload) re-executes the installed binary in place: same PID,\n"
        "same listeners, established connections kept. SIGTERM drains and exits.\n"
        "Exit status: 0 after a clean stop, 1 on a runtime failure, 64 on bad usage.\n";

/* One line on stderr, written at once: "echod: <what is wrong> (see --help)". */
__attribute__((format(printf, 1, 2))) static int usage_error(const char *format, ...) {
        char line[512];
        va_list ap;

        va_start(ap, format);
        vsnprintf(line, sizeof(line), format, ap);
        va_end(ap);
        /* The values come from argv: no newline or control byte may reach the terminal. */
        log_sanitize(line, sizeof(line), line, strlen(line));
        fprintf(stderr, "echod: %s (see --help)\n", line);
        return -EINVAL;
}

static int parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *ret) {
        char *end;
        unsigned long long v;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0')
                return -EINVAL;
        if (v < min || v > max)
                return -ERANGE;
        *ret = (unsigned)v;
        return 0;
}

int options_parse_duration(const char *s, uint64_t max_usec, uint64_t *ret_usec) {
        static const struct {
                const char *name;
                uint64_t usec;
        } units[] = {
                { "", 1000000 }, { "s", 1000000 },    { "ms", 1000 },
                { "us", 1 },     { "min", 60000000 }, { "h", 3600000000ull },
        };
        char *end;
        unsigned long long v;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0)
                return -ERANGE;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                if (strcmp(end, units[i].name) != 0)
                        continue;
                if (v > max_usec / units[i].usec)
                        return -ERANGE;
                *ret_usec = v * units[i].usec;
                return 0;
        }
        return -EINVAL;
}

static int add_listen(struct options *o, enum listen_kind kind, const char *value) {
        int r;

        if (o->n_listen >= OPTIONS_MAX_LISTEN)
                return usage_error("too many listeners (at most 64), at '%s'", value);
        if (kind == LISTEN_TCP && strchr(value, '/')) {
                kind = LISTEN_UNIX;
                if (strlen(value) >= ADDR_UNIX_PATH_MAX)
                        return usage_error("socket path too long: '%s'", value);
        } else {
                r = addr_parse(value, NULL, NULL);
                if (r < 0)
                        return usage_error("invalid address '%s': expected [HOST:]PORT, "
                                           "PORT 1..65535, HOST numeric",
                                           value);
        }
        o->listen[o->n_listen++] = (struct listen_spec){ .kind = kind, .value = value };
        return 0;
}

int options_parse(int argc, char *argv[], struct options *ret) {
        struct options o = {
                .max_clients = OPTIONS_DEFAULT_MAX_CLIENTS,
                .idle_timeout_usec = OPTIONS_DEFAULT_IDLE_USEC,
                .drain_timeout_usec = OPTIONS_DEFAULT_DRAIN_USEC,
                .log_level = LOG_INFO,
        };
        int c, r;

        optind = 0; /* also resets getopt's state, so tests may call this repeatedly */
        opterr = 0;
        while ((c = getopt_long(argc, argv, short_options, long_options, NULL)) >= 0) {
                switch (c) {
                case 'l':
                case 'u':
                        r = add_listen(&o, c == 'l' ? LISTEN_TCP : LISTEN_UDP, optarg);
                        if (r < 0)
                                return r;
                        break;
                case 'c':
                        if (parse_unsigned(optarg, 1, OPTIONS_MAX_MAX_CLIENTS, &o.max_clients) < 0)
                                return usage_error("--max-clients needs an integer from 1 to "
                                                   "1000000, not '%s'",
                                                   optarg);
                        break;
                case 's':
                        if (parse_unsigned(optarg, 0, OPTIONS_MAX_MAX_CLIENTS, &o.max_per_source) < 0)
                                return usage_error("--max-per-source needs an integer from 0 to "
                                                   "1000000, not '%s'",
                                                   optarg);
                        break;
                case 't':
                        if (options_parse_duration(optarg, OPTIONS_MAX_IDLE_USEC, &o.idle_timeout_usec) < 0)
                                return usage_error("--idle-timeout needs a duration up to 24 h "
                                                   "(e.g. 300, 30s, 5min), not '%s'",
                                                   optarg);
                        break;
                case 'd':
                        if (options_parse_duration(optarg, OPTIONS_MAX_DRAIN_USEC, &o.drain_timeout_usec) < 0)
                                return usage_error("--drain-timeout needs a duration up to 1 h "
                                                   "(e.g. 5, 500ms, 1min), not '%s'",
                                                   optarg);
                        break;
                case ARG_LOG_LEVEL:
                        r = log_level_from_string(optarg);
                        if (r < 0)
                                return usage_error("--log-level needs err, warning, notice, info "
                                                   "or debug, not '%s'",
                                                   optarg);
                        o.log_level = r;
                        break;
                case ARG_LOG_PEER:
                        if (strcmp(optarg, "full") == 0)
                                o.log_peer = ADDR_LOG_PEER_FULL;
                        else if (strcmp(optarg, "network") == 0)
                                o.log_peer = ADDR_LOG_PEER_NETWORK;
                        else if (strcmp(optarg, "none") == 0)
                                o.log_peer = ADDR_LOG_PEER_NONE;
                        else
                                return usage_error("--log-peer needs full, network or none, not '%s'",
                                                   optarg);
                        break;
                case ARG_PROXY_PROTOCOL:
                        if (optarg && optarg[0] == '\0')
                                return usage_error("--proxy-protocol= needs a socket name");
                        o.proxy_protocol = true;
                        o.proxy_name = optarg;
                        break;
                case ARG_CHECK:
                        o.check = true;
                        break;
                case 'h':
                        fputs(help_text, stdout);
                        return 1;
                case 'V':
                        puts("echod " ECHOD_VERSION);
                        return 1;
                case ':':
                        return usage_error("option '%s' needs a value", argv[optind - 1]);
                default:
                        if (optopt != 0) {
                                char name[3] = { '-', (char)optopt, '\0' };
                                return usage_error("unknown option '%s'", name);
                        }
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind < argc)
                return usage_error("unexpected argument '%s'", argv[optind]);

        *ret = o;
        return 0;
}
