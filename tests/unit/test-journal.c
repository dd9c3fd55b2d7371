/* Unit test of journal.c (the native-protocol encoder and sender) and of the --log-peer
 * masks of addr.c: binary-safe values, field-name rules, a bounded record, a datagram that
 * reaches a socket, and addresses masked to their network or hidden. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "journal.h"
#include "tap.h"

static bool same(const struct journal_record *r, const char *want, size_t len, const char *what) {
        bool ok = r->n == len && memcmp(r->data, want, len) == 0;

        if (!tap(ok, "%s", what))
                printf("# got %zu bytes, want %zu\n", r->n, len);
        return ok;
}

static void test_names(void) {
        static const char *const good[] = { "MESSAGE", "ECHOD_PEER_ADDR", "A", "X9_", "ERRNO" };
        static const char *const bad[] = { "", "_PID", "9LIVES", "message", "ECHOD-END", "ECHOD END", "ÄÖ" };
        char longest[JOURNAL_FIELD_NAME_MAX + 2];

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                tap(journal_field_name_valid(good[i]), "field name \"%s\" is valid", good[i]);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                tap(!journal_field_name_valid(bad[i]), "field name \"%s\" is refused", bad[i]);
        memset(longest, 'A', JOURNAL_FIELD_NAME_MAX);
        longest[JOURNAL_FIELD_NAME_MAX] = '\0';
        tap(journal_field_name_valid(longest), "a name of 64 characters is valid");
        longest[JOURNAL_FIELD_NAME_MAX] = 'A';
        longest[JOURNAL_FIELD_NAME_MAX + 1] = '\0';
        tap(!journal_field_name_valid(longest), "a name of 65 characters is refused");
}

static void test_encoding(void) {
        struct journal_record r;
        static const char binary[] = "MESSAGE\n\x05\0\0\0\0\0\0\0a\nb\0c\n";

        journal_record_start(&r);
        tap(journal_record_add(&r, "MESSAGE", "hello", 5) == 0, "a plain value is added");
        tap(journal_record_addf(&r, "ECHOD_BYTES", "%d", 64) == 0, "a formatted value is added");
        same(&r, "MESSAGE=hello\nECHOD_BYTES=64\n", 29, "plain values: NAME=value lines");

        journal_record_start(&r);
        tap(journal_record_add(&r, "MESSAGE", "a\nb\0c", 5) == 0,
            "a value with a newline and a NUL is added");
        same(&r, binary, sizeof(binary) - 1,
             "... in the binary form: name, newline, 64-bit LE length, bytes");

        journal_record_start(&r);
        tap(journal_record_add(&r, "_PID", "1", 1) == -EINVAL && r.n == 0 && r.n_left_out == 1,
            "a field with a bad name is left out and counted");
}

static void test_bounds(void) {
        static char big[JOURNAL_RECORD_MAX];
        struct journal_record r;
        size_t before;

        memset(big, 'x', sizeof(big));
        journal_record_start(&r);
        tap(journal_record_add(&r, "MESSAGE", big, sizeof(big)) == -ENOBUFS && r.n == 0,
            "a value larger than the record is left out whole");
        tap(journal_record_add(&r, "A", big, sizeof(big) - 3) == 0 && r.n == sizeof(big),
            "a field that fills the record exactly fits (A=, the value, a newline)");
        before = r.n;
        tap(journal_record_add(&r, "B", "", 0) == -ENOBUFS && r.n == before && r.n_left_out == 2,
            "... and the next one is left out, the record unchanged");
}

static void test_send(void) {
        char dir[] = "/tmp/test-journal-XXXXXX", path[sizeof(dir) + 16], got[64];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct journal_record r;
        int server, fd;
        ssize_t n;

        if (!mkdtemp(dir)) {
                tap(false, "mkdtemp: %s", strerror(errno));
                return;
        }
        snprintf(path, sizeof(path), "%s/socket", dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        setenv("ECHOD_TEST_JOURNAL_SOCKET", path, 1);
        fd = journal_open();
        journal_record_start(&r);
        (void)journal_record_add(&r, "MESSAGE", "hi", 2);
        tap(journal_send(fd, &r) < 0, "no journal socket: the record is refused at once");

        server = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        tap(server >= 0 && bind(server, (struct sockaddr *)&sa, sizeof(sa)) == 0,
            "a journal socket is bound");
        tap(journal_send(fd, &r) == 0, "the record is sent");
        n = recv(server, got, sizeof(got), MSG_DONTWAIT);
        tap(n == 11 && memcmp(got, "MESSAGE=hi\n", 11) == 0, "... and arrives as one datagram");

        /* Full: the sender must not wait (MSG_DONTWAIT). */
        int error = 0;
        for (int i = 0; i < 100000 && error == 0; i++)
                error = journal_send(fd, &r);
        tap(error == -EAGAIN, "a full journal socket refuses the record at once (EAGAIN), got %d", error);

        close(server);
        close(fd);
        unlink(path);
        rmdir(dir);
        unsetenv("ECHOD_TEST_JOURNAL_SOCKET");
}

static void check_mask(enum addr_log_peer mode, const char *addr, const char *want_text) {
        struct sockaddr_storage ss;
        socklen_t len;
        char text[ADDR_TEXT_MAX];

        addr_set_log_peer(mode);
        if (addr_parse(addr, &ss, &len) < 0) {
                tap(false, "addr_parse(%s)", addr);
                return;
        }
        addr_format_peer((struct sockaddr *)&ss, len, text, sizeof(text));
        if (!tap(strcmp(text, want_text) == 0, "--log-peer %d: %s is \"%s\"", (int)mode, addr, want_text))
                printf("# got \"%s\"\n", text);
}

static void test_masks(void) {
        struct sockaddr_storage ss;
        socklen_t len;
        char text[ADDR_TEXT_MAX];

        check_mask(ADDR_LOG_PEER_FULL, "192.0.2.77:40000", "192.0.2.77 port 40000");
        check_mask(ADDR_LOG_PEER_NETWORK, "192.0.2.77:40000", "192.0.2.0/24 port 40000");
        check_mask(ADDR_LOG_PEER_NETWORK, "[2001:db8:1:2:3:4:5:6]:7", "2001:db8:1::/48 port 7");
        check_mask(ADDR_LOG_PEER_NETWORK, "[::ffff:198.51.100.9]:7", "198.51.100.0/24 port 7");
        check_mask(ADDR_LOG_PEER_NONE, "192.0.2.77:40000", "(hidden) port 40000");
        check_mask(ADDR_LOG_PEER_NONE, "[2001:db8::1]:7", "(hidden) port 7");

        (void)addr_parse("[2001:db8:1:2::9]:7", &ss, &len);
        addr_set_log_peer(ADDR_LOG_PEER_NETWORK);
        addr_format_source(addr_source_key((struct sockaddr *)&ss, len), text, sizeof(text));
        tap(strcmp(text, "2001:db8:1::/48") == 0, "network: a refused IPv6 source is its /48 (%s)", text);
        (void)addr_parse("192.0.2.77:7", &ss, &len);
        addr_format_source(addr_source_key((struct sockaddr *)&ss, len), text, sizeof(text));
        tap(strcmp(text, "192.0.2.0/24") == 0, "network: a refused IPv4 source is its /24 (%s)", text);
        addr_set_log_peer(ADDR_LOG_PEER_NONE);
        addr_format_source(addr_source_key((struct sockaddr *)&ss, len), text, sizeof(text));
        tap(strcmp(text, "(hidden)") == 0, "none: a refused source is hidden (%s)", text);
        addr_set_log_peer(ADDR_LOG_PEER_FULL);
}

int main(void) {
        test_names();
        test_encoding();
        test_bounds();
        test_send();
        test_masks();
        return tap_done();
}
