/* Unit test of options.c: a table of argv that must parse (with the values they must give)
 * and of argv that must be refused with -EINVAL and exactly one line on stderr. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <getopt.h>
#include <unistd.h>
#include <sys/mman.h>

#include "config.h"
#include "options.h"
#include "tap.h"

#define MAX_ARGS 160

/* What one options_parse() call returned and wrote. */
struct call {
        int r;
        struct options opts;
        char out[4096];
        char err[4096];
};

static void read_back(int fd, char *buf, size_t size) {
        ssize_t n;

        lseek(fd, 0, SEEK_SET);
        n = read(fd, buf, size - 1);
        buf[n > 0 ? n : 0] = '\0';
}

/* Runs options_parse() on a NULL-terminated list of words, capturing stdout and stderr. The
 * words are copied: getopt may permute argv. */
static void call_parse(const char *const *words, struct call *ret) {
        static char storage[MAX_ARGS][256];
        char *argv[MAX_ARGS + 1];
        int argc = 0, out_fd, err_fd, saved_out, saved_err;

        for (; words[argc]; argc++) {
                snprintf(storage[argc], sizeof(storage[argc]), "%s", words[argc]);
                argv[argc] = storage[argc];
        }
        argv[argc] = NULL;

        out_fd = memfd_create("out", 0);
        err_fd = memfd_create("err", 0);
        if (out_fd < 0 || err_fd < 0) {
                perror("memfd_create");
                exit(1);
        }
        fflush(stdout);
        fflush(stderr);
        saved_out = dup(1);
        saved_err = dup(2);
        dup2(out_fd, 1);
        dup2(err_fd, 2);

        optind = 0; /* glibc: full re-initialisation of getopt for each call */
        memset(&ret->opts, 0xa5, sizeof(ret->opts));
        ret->r = options_parse(argc, argv, &ret->opts);

        fflush(stdout);
        fflush(stderr);
        dup2(saved_out, 1);
        dup2(saved_err, 2);
        close(saved_out);
        close(saved_err);
        read_back(out_fd, ret->out, sizeof(ret->out));
        read_back(err_fd, ret->err, sizeof(ret->err));
        close(out_fd);
        close(err_fd);
}

/* For a TAP description: newlines shown as \n. */
static const char *oneline(const char *s) {
        static char buf[1024];
        size_t j = 0;

        for (; *s && j < sizeof(buf) - 3; s++) {
                if (*s == '\n') {
                        buf[j++] = '\\';
                        buf[j++] = 'n';
                } else {
                        buf[j++] = *s;
                }
        }
        buf[j] = '\0';
        return buf;
}

static unsigned count_lines(const char *s) {
        unsigned n = 0;

        for (; *s; s++)
                if (*s == '\n')
                        n++;
        return n;
}

static char *describe(const char *const *words) {
        static char buf[512];
        size_t len = 0;

        buf[0] = '\0';
        for (size_t i = 1; words[i] && len < sizeof(buf) - 1; i++)
                len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s'%s'", i > 1 ? " " : "", words[i]);
        return buf;
}

#define ARGV(...) ((const char *const[]){ "echod", __VA_ARGS__, NULL })

static const char *const *bad_table[] = {
        ARGV("--bogus"),
        ARGV("-x"),
        ARGV("--listen"),
        ARGV("-l"),
        ARGV("--listen-udp"),
        ARGV("-l", "7007", "extra-positional"),
        ARGV("--listen", "0"),
        ARGV("--listen", "70000"),
        ARGV("--listen", "65536"),
        ARGV("--listen", "-1"),
        ARGV("--listen", "http"),
        ARGV("--listen", ""),
        ARGV("--listen", "127.0.0.1:0"),
        ARGV("--listen", "127.0.0.1:"),
        ARGV("--listen", "999.1.1.1:7"),
        ARGV("--listen", "localhost:7"),
        ARGV("--listen", "::1:7"),
        ARGV("--listen", "[::1:7"),
        ARGV("--listen", "[::1]"),
        ARGV("--listen", "[bogus]:7"),
        ARGV("--listen-udp", "0"),
        ARGV("-u", "70000"),
        ARGV("--max-clients"),
        ARGV("--max-clients", "0"),
        ARGV("--max-clients", "-1"),
        ARGV("--max-clients", "abc"),
        ARGV("--max-clients", ""),
        ARGV("--max-clients", "3x"),
        ARGV("--max-clients", "0x10"),
        ARGV("--max-clients", "1000001"),
        ARGV("--max-clients", "4294967297"),
        ARGV("--max-clients", "99999999999999999999999"),
        ARGV("-c", "0"),
        ARGV("--max-per-source", "-1"),
        ARGV("--max-per-source", "many"),
        ARGV("--max-per-source", "99999999999999999999999"),
        ARGV("--idle-timeout"),
        ARGV("--idle-timeout", "5fortnights"),
        ARGV("--idle-timeout", "5m"),
        ARGV("--idle-timeout", "1.5"),
        ARGV("--idle-timeout", "-1"),
        ARGV("--idle-timeout", ""),
        ARGV("--idle-timeout", "s"),
        ARGV("--idle-timeout", "86401"),
        ARGV("--idle-timeout", "25h"),
        ARGV("--idle-timeout", "18446744073709551615h"),
        ARGV("-t", "abc"),
        ARGV("--drain-timeout", "3601"),
        ARGV("--drain-timeout", "61min"),
        ARGV("--drain-timeout", "2h"),
        ARGV("--drain-timeout", "x"),
        ARGV("-d", "-3"),
        ARGV("--log-level"),
        ARGV("--log-level", "bogus"),
        ARGV("--log-level", ""),
        ARGV("--log-level", "7"),
        ARGV("--version=1"),
};

static void test_bad(void) {
        for (size_t i = 0; i < sizeof(bad_table) / sizeof(bad_table[0]); i++) {
                struct call c;

                call_parse(bad_table[i], &c);
                tap(c.r == -EINVAL && count_lines(c.err) == 1 && c.out[0] == '\0',
                    "bad argv [%s] -> -EINVAL and one line on stderr (got r=%d, %u lines: %s)",
                    describe(bad_table[i]), c.r, count_lines(c.err), oneline(c.err));
        }
}

static void test_too_many_listen(void) {
        const char *words[2 * OPTIONS_MAX_LISTEN + 4];
        static char ports[OPTIONS_MAX_LISTEN + 1][16];
        size_t n = 0;
        struct call c;

        words[n++] = "echod";
        for (unsigned i = 0; i <= OPTIONS_MAX_LISTEN; i++) {
                snprintf(ports[i], sizeof(ports[i]), "%u", 2000 + i);
                words[n++] = "--listen";
                words[n++] = ports[i];
        }
        words[n] = NULL;
        call_parse(words, &c);
        tap(c.r == -EINVAL && count_lines(c.err) == 1,
            "%d --listen options (one more than the maximum) -> -EINVAL, one line (r=%d)",
            OPTIONS_MAX_LISTEN + 1, c.r);

        words[2 * OPTIONS_MAX_LISTEN + 1] = NULL; /* exactly the maximum */
        call_parse(words, &c);
        tap(c.r == 0 && c.opts.n_listen == OPTIONS_MAX_LISTEN,
            "exactly %d --listen options are accepted (r=%d)", OPTIONS_MAX_LISTEN, c.r);
}

static void test_defaults(void) {
        struct call c;

        call_parse((const char *const[]){ "echod", NULL }, &c);
        tap(c.r == 0, "no arguments parse (sockets come from systemd) (r=%d)", c.r);
        tap(c.opts.n_listen == 0, "no arguments: no --listen (%zu)", c.opts.n_listen);
        tap(c.opts.max_clients == OPTIONS_DEFAULT_MAX_CLIENTS && c.opts.max_clients == 1024,
            "default --max-clients is 1024 (%u)", c.opts.max_clients);
        tap(c.opts.max_per_source == 0, "default --max-per-source is 0 (%u)", c.opts.max_per_source);
        tap(c.opts.idle_timeout_usec == 300ull * 1000000ull, "default --idle-timeout is 300 s (%llu us)",
            (unsigned long long)c.opts.idle_timeout_usec);
        tap(c.opts.drain_timeout_usec == 5ull * 1000000ull, "default --drain-timeout is 5 s (%llu us)",
            (unsigned long long)c.opts.drain_timeout_usec);
        tap(c.opts.log_level == LOG_INFO, "default --log-level is info (%d)", c.opts.log_level);
        tap(c.out[0] == '\0' && c.err[0] == '\0', "a good parse prints nothing");
}

static void test_listen_kinds(void) {
        struct call c;

        call_parse(ARGV("--listen", "7007", "-l", "/run/echo.sock", "--listen-udp", "[::1]:7", "-u",
                        "127.0.0.1:7", "--listen=127.0.0.1:8", "-l", "[::]:9"),
                   &c);
        tap(c.r == 0 && c.opts.n_listen == 6, "six listeners parse (r=%d, n=%zu)", c.r, c.opts.n_listen);
        if (c.r != 0 || c.opts.n_listen != 6)
                return;
        tap(c.opts.listen[0].kind == LISTEN_TCP && strcmp(c.opts.listen[0].value, "7007") == 0,
            "--listen 7007 is TCP, in order");
        tap(c.opts.listen[1].kind == LISTEN_UNIX && strcmp(c.opts.listen[1].value, "/run/echo.sock") == 0,
            "-l /run/echo.sock (contains '/') is AF_UNIX");
        tap(c.opts.listen[2].kind == LISTEN_UDP && strcmp(c.opts.listen[2].value, "[::1]:7") == 0,
            "--listen-udp [::1]:7 is UDP");
        tap(c.opts.listen[3].kind == LISTEN_UDP, "-u is UDP");
        tap(c.opts.listen[4].kind == LISTEN_TCP && strcmp(c.opts.listen[4].value, "127.0.0.1:8") == 0,
            "--listen=VALUE form");
        tap(c.opts.listen[5].kind == LISTEN_TCP && strcmp(c.opts.listen[5].value, "[::]:9") == 0,
            "-l [::]:9 is TCP");
}

struct good_num {
        const char *const *words;
        unsigned max_clients, max_per_source;
        unsigned long long idle_usec, drain_usec;
        int log_level;
};

static void test_good_values(void) {
        const struct good_num table[] = {
                { ARGV("--max-clients", "1"), 1, 0, 300000000ull, 5000000ull, LOG_INFO },
                { ARGV("-c", "3"), 3, 0, 300000000ull, 5000000ull, LOG_INFO },
                { ARGV("--max-clients=1000000"), 1000000, 0, 300000000ull, 5000000ull, LOG_INFO },
                { ARGV("--max-per-source", "0"), 1024, 0, 300000000ull, 5000000ull, LOG_INFO },
                { ARGV("-s", "5"), 1024, 5, 300000000ull, 5000000ull, LOG_INFO },
                { ARGV("--idle-timeout", "0"), 1024, 0, 0, 5000000ull, LOG_INFO },
                { ARGV("--idle-timeout", "1"), 1024, 0, 1000000ull, 5000000ull, LOG_INFO },
                { ARGV("-t", "500ms"), 1024, 0, 500000ull, 5000000ull, LOG_INFO },
                { ARGV("--idle-timeout", "250us"), 1024, 0, 250ull, 5000000ull, LOG_INFO },
                { ARGV("--idle-timeout", "7s"), 1024, 0, 7000000ull, 5000000ull, LOG_INFO },
                { ARGV("--idle-timeout", "2min"), 1024, 0, 120000000ull, 5000000ull, LOG_INFO },
                { ARGV("--idle-timeout", "1h"), 1024, 0, 3600000000ull, 5000000ull, LOG_INFO },
                { ARGV("--idle-timeout", "86400"), 1024, 0, 86400000000ull, 5000000ull, LOG_INFO },
                { ARGV("--idle-timeout", "24h"), 1024, 0, 86400000000ull, 5000000ull, LOG_INFO },
                { ARGV("--drain-timeout", "0"), 1024, 0, 300000000ull, 0, LOG_INFO },
                { ARGV("-d", "3600"), 1024, 0, 300000000ull, 3600000000ull, LOG_INFO },
                { ARGV("--drain-timeout", "1h"), 1024, 0, 300000000ull, 3600000000ull, LOG_INFO },
                { ARGV("--drain-timeout", "60min"), 1024, 0, 300000000ull, 3600000000ull, LOG_INFO },
                { ARGV("--drain-timeout", "1500ms"), 1024, 0, 300000000ull, 1500000ull, LOG_INFO },
                { ARGV("--log-level", "err"), 1024, 0, 300000000ull, 5000000ull, LOG_ERR },
                { ARGV("--log-level", "warning"), 1024, 0, 300000000ull, 5000000ull, LOG_WARNING },
                { ARGV("--log-level", "notice"), 1024, 0, 300000000ull, 5000000ull, LOG_NOTICE },
                { ARGV("--log-level", "info"), 1024, 0, 300000000ull, 5000000ull, LOG_INFO },
                { ARGV("--log-level=debug"), 1024, 0, 300000000ull, 5000000ull, LOG_DEBUG },
                { ARGV("-c", "8", "-c", "9"), 9, 0, 300000000ull, 5000000ull, LOG_INFO },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                const struct good_num *g = &table[i];
                struct call c;

                call_parse(g->words, &c);
                tap(c.r == 0 && c.opts.max_clients == g->max_clients &&
                            c.opts.max_per_source == g->max_per_source &&
                            c.opts.idle_timeout_usec == g->idle_usec &&
                            c.opts.drain_timeout_usec == g->drain_usec && c.opts.log_level == g->log_level &&
                            c.err[0] == '\0',
                    "good argv [%s] (r=%d clients=%u per_source=%u idle=%llu drain=%llu level=%d)",
                    describe(g->words), c.r, c.opts.max_clients, c.opts.max_per_source,
                    (unsigned long long)c.opts.idle_timeout_usec,
                    (unsigned long long)c.opts.drain_timeout_usec, c.opts.log_level);
        }
}

static void test_help_version(void) {
        struct call c;

        call_parse(ARGV("--help"), &c);
        tap(c.r == 1 && strstr(c.out, "Usage: echod") && c.err[0] == '\0',
            "--help returns 1 and prints the usage to stdout only (r=%d)", c.r);
        call_parse(ARGV("-h"), &c);
        tap(c.r == 1 && strstr(c.out, "Usage: echod"), "-h is --help (r=%d)", c.r);
        call_parse(ARGV("--version"), &c);
        /* the version is meson.build's (config.h); test_release.py checks the binary against it */
        tap(c.r == 1 && strcmp(c.out, "echod " ECHOD_VERSION "\n") == 0 && c.err[0] == '\0',
            "--version returns 1 and prints \"echod " ECHOD_VERSION "\" to stdout (r=%d, out=%s)", c.r,
            oneline(c.out));
        call_parse(ARGV("-V"), &c);
        tap(c.r == 1 && strcmp(c.out, "echod " ECHOD_VERSION "\n") == 0, "-V is --version (r=%d)", c.r);
}

struct dur {
        const char *s;
        uint64_t max_usec;
        int r;
        uint64_t usec;
};

static void test_durations(void) {
        static const struct dur table[] = {
                { "0", 3600000000ull, 0, 0 },
                { "5", 3600000000ull, 0, 5000000ull },
                { "5s", 3600000000ull, 0, 5000000ull },
                { "5ms", 3600000000ull, 0, 5000ull },
                { "5us", 3600000000ull, 0, 5ull },
                { "2min", 3600000000ull, 0, 120000000ull },
                { "1h", 3600000000ull, 0, 3600000000ull },
                { "3600", 3600000000ull, 0, 3600000000ull },
                { "3600000ms", 3600000000ull, 0, 3600000000ull },
                { "", 3600000000ull, -EINVAL, 0 },
                { "s", 3600000000ull, -EINVAL, 0 },
                { "ms", 3600000000ull, -EINVAL, 0 },
                { "5x", 3600000000ull, -EINVAL, 0 },
                { "5m", 3600000000ull, -EINVAL, 0 },
                { "5sec", 3600000000ull, -EINVAL, 0 },
                { "-5", 3600000000ull, -EINVAL, 0 },
                { "1.5", 3600000000ull, -EINVAL, 0 },
                { "0x10", 3600000000ull, -EINVAL, 0 },
                { "abc", 3600000000ull, -EINVAL, 0 },
                { "3601", 3600000000ull, -ERANGE, 0 },
                { "2h", 3600000000ull, -ERANGE, 0 },
                { "18446744073709551615h", 3600000000ull, -ERANGE, 0 },
                { "99999999999999999999999", 3600000000ull, -ERANGE, 0 },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                const struct dur *d = &table[i];
                uint64_t usec = 12345;
                int r = options_parse_duration(d->s, d->max_usec, &usec);
                bool ok;

                if (d->r == 0)
                        ok = r == 0 && usec == d->usec;
                else if (d->r == -ERANGE) /* too big: either error is fine, never a value */
                        ok = r == -ERANGE || r == -EINVAL;
                else
                        ok = r == -EINVAL;
                tap(ok, "options_parse_duration(\"%s\", max %llu) -> %d, %llu us (expected %d%s)", d->s,
                    (unsigned long long)d->max_usec, r, (unsigned long long)usec, d->r,
                    d->r == 0 ? "" : " or another negative errno for a range error");
        }
}

int main(void) {
        test_defaults();
        test_listen_kinds();
        test_good_values();
        test_bad();
        test_too_many_listen();
        test_help_version();
        test_durations();
        return tap_done();
}
