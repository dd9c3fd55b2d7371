/* Unit test of proxy.c, the PROXY protocol parser: whole headers of both versions and what
 * they claim, every prefix of a good header asks for more, the payload after a header is
 * never part of it, and each kind of bad header gets its own answer. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "proxy.h"
#include "tap.h"

static const uint8_t sig[12] = { '\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n' };

struct vector {
        const char *what;
        const uint8_t *bytes;
        size_t size;
        enum proxy_status want;
        size_t want_length;      /* with PROXY_DONE */
        const char *want_source; /* with PROXY_DONE: "HOST port N", or NULL for none claimed */
};

static bool check(const struct vector *v) {
        struct proxy_header h;
        enum proxy_status st = proxy_parse(v->bytes, v->size, &h);
        char text[ADDR_TEXT_MAX] = "(none)";
        bool ok = st == v->want;

        if (ok && st == PROXY_DONE) {
                if (h.address_len > 0)
                        addr_format_peer((struct sockaddr *)&h.source, h.address_len, text, sizeof(text));
                ok = h.length == v->want_length &&
                     strcmp(text, v->want_source ? v->want_source : "(none)") == 0;
        }
        if (!tap(ok, "%s: %s", v->what, proxy_status_to_string(v->want)))
                printf("# got %s, length %zu, source %s\n", proxy_status_to_string(st), h.length, text);
        return ok;
}

static void text_vector(const char *what, const char *text, enum proxy_status want, size_t want_length,
                        const char *want_source) {
        struct vector v = { what, (const uint8_t *)text, strlen(text), want, want_length, want_source };
        check(&v);
}

/* Every proper prefix of bytes[0..size) must be PROXY_NEED_MORE. */
static void prefixes_need_more(const char *what, const uint8_t *bytes, size_t size) {
        struct proxy_header h;
        size_t bad = size;

        for (size_t n = 0; n < size && bad == size; n++)
                if (proxy_parse(bytes, n, &h) != PROXY_NEED_MORE)
                        bad = n;
        if (!tap(bad == size, "%s: each of its %zu proper prefixes needs more", what, size))
                printf("# the first %zu bytes did not\n", bad);
}

static void test_v1(void) {
        static const char tcp4[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 7\r\n";
        static const char tcp6[] = "PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
        char buf[256];

        text_vector("v1 TCP4", tcp4, PROXY_DONE, strlen(tcp4), "192.0.2.1 port 56324");
        text_vector("v1 TCP6", tcp6, PROXY_DONE, strlen(tcp6), "2001:db8::1 port 65535");
        text_vector("v1 TCP4 with payload after it", "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\nPROXY hello\r\n",
                    PROXY_DONE, 34, "10.0.0.1 port 1");
        text_vector("v1 TCP6 with an IPv4-mapped address", "PROXY TCP6 ::ffff:10.0.0.1 ::1 1 2\r\n",
                    PROXY_DONE, 36, "10.0.0.1 port 1");
        text_vector("v1 UNKNOWN", "PROXY UNKNOWN\r\n", PROXY_DONE, 15, NULL);
        text_vector("v1 UNKNOWN with addresses (ignored)", "PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\nx",
                    PROXY_DONE, 39, NULL);
        prefixes_need_more("v1 TCP4", (const uint8_t *)tcp4, strlen(tcp4));
        prefixes_need_more("v1 TCP6", (const uint8_t *)tcp6, strlen(tcp6));

        text_vector("v1 port with a leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", PROXY_BAD_V1, 0,
                    NULL);
        text_vector("v1 port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 port with a sign", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 port empty", "PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 address with a leading zero", "PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", PROXY_BAD_V1, 0,
                    NULL);
        text_vector("v1 address out of range", "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 short IPv4 address", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 host name", "PROXY TCP4 localhost 5.6.7.8 1 2\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 TCP4 with IPv6 addresses", "PROXY TCP4 ::1 ::1 1 2\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 TCP6 with IPv4 addresses", "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_BAD_V1, 0,
                    NULL);
        text_vector("v1 unknown protocol", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 UDP4", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 two spaces", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 a field too many", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 a field too few", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 nothing after PROXY", "PROXY \r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 UNKNOWNX", "PROXY UNKNOWNX\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 LF without CR", "PROXY UNKNOWN\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 CR without LF", "PROXY UNKNOWN\rx", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 a tab", "PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n", PROXY_BAD_V1, 0, NULL);
        text_vector("v1 a NUL byte", "PROXY UNKNOWN", PROXY_NEED_MORE, 0, NULL);
        {
                static const uint8_t nul[] = { 'P', 'R', 'O', 'X', 'Y', ' ', 'U', 0, '\r', '\n' };
                struct vector v = { "v1 a NUL byte", nul, sizeof(nul), PROXY_BAD_V1, 0, NULL };
                check(&v);
        }

        /* The longest line is 107 bytes with its CRLF. */
        memset(buf, 0, sizeof(buf));
        snprintf(buf, sizeof(buf), "PROXY UNKNOWN %.*s\r\n", 107 - 16,
                 "-----------------------------------"
                 "-----------------------------------"
                 "-----------------------------------");
        text_vector("v1 of 107 bytes", buf, PROXY_DONE, 107, NULL);
        snprintf(buf, sizeof(buf), "PROXY UNKNOWN %.*s\r\n", 108 - 16,
                 "-----------------------------------"
                 "-----------------------------------"
                 "-----------------------------------");
        text_vector("v1 of 108 bytes", buf, PROXY_OVERSIZED, 0, NULL);
        memset(buf, 'x', 200);
        memcpy(buf, "PROXY UNKNOWN ", 14);
        buf[200] = '\0';
        text_vector("v1 without a CRLF in 200 bytes", buf, PROXY_OVERSIZED, 0, NULL);
        buf[106] = '\0';
        text_vector("v1 without a CRLF in 106 bytes", buf, PROXY_OVERSIZED, 0, NULL);
        buf[105] = '\0';
        text_vector("v1 without a CRLF in 105 bytes (the CR may still come)", buf, PROXY_NEED_MORE, 0, NULL);

        text_vector("empty", "", PROXY_NEED_MORE, 0, NULL);
        text_vector("P", "P", PROXY_NEED_MORE, 0, NULL);
        text_vector("an HTTP request", "GET / HTTP/1.0\r\n\r\n", PROXY_MISSING, 0, NULL);
        text_vector("lower case proxy", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_MISSING, 0, NULL);
        text_vector("PROXY without its space", "PROXYTCP4", PROXY_MISSING, 0, NULL);
        text_vector("PRX", "PRX", PROXY_MISSING, 0, NULL);
        text_vector("a lone CRLF", "\r\nX", PROXY_MISSING, 0, NULL);
}

/* A v2 header: version/command byte, family/transport byte, body of len bytes (the first
 * body_size of them from body, the rest zero), then extra bytes of payload. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, size_t len, const uint8_t *body,
                 size_t body_size, size_t extra) {
        memcpy(out, sig, 12);
        out[12] = ver_cmd;
        out[13] = fam;
        out[14] = (uint8_t)(len >> 8);
        out[15] = (uint8_t)len;
        memset(out + 16, 0, len + extra);
        if (body_size > 0)
                memcpy(out + 16, body, body_size);
        memset(out + 16 + len, 'P', extra);
        return 16 + len + extra;
}

static void v2_vector(const char *what, const uint8_t *bytes, size_t size, enum proxy_status want,
                      size_t want_length, const char *want_source) {
        struct vector v = { what, bytes, size, want, want_length, want_source };
        check(&v);
}

static void test_v2(void) {
        static const uint8_t inet[12] = { 192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0, 7 };
        static const uint8_t inet6[36] = { 0x20, 0x01, 0x0d,     0xb8, [15] = 1, 0x20, 0x01,
                                           0x0d, 0xb8, [31] = 2, 0xff, 0xff,     0,    7 };
        /* What HAProxy adds with proxy-v2-options: a CRC32C and a unique ID, as TLVs. */
        static const uint8_t tlvs[12 + 7 + 8] = { 10, 0, 0, 1, 10, 0,    0, 2, 0,   1,   0,   2,   0x03, 0,
                                                  4,  1, 2, 3, 4,  0x05, 0, 5, 'a', 'b', 'c', 'd', 'e' };
        static uint8_t buf[16 + 65535 + 256];
        size_t n;

        n = v2(buf, 0x21, 0x11, 12, inet, sizeof(inet), 0);
        v2_vector("v2 PROXY TCP4", buf, n, PROXY_DONE, 28, "192.0.2.1 port 56324");
        prefixes_need_more("v2 PROXY TCP4", buf, n);
        n = v2(buf, 0x21, 0x11, 12, inet, sizeof(inet), 100);
        v2_vector("v2 PROXY TCP4 with payload after it", buf, n, PROXY_DONE, 28, "192.0.2.1 port 56324");
        n = v2(buf, 0x21, 0x21, 36, inet6, sizeof(inet6), 5);
        v2_vector("v2 PROXY TCP6", buf, n, PROXY_DONE, 52, "2001:db8::1 port 65535");
        prefixes_need_more("v2 PROXY TCP6", buf, n - 5);
        n = v2(buf, 0x21, 0x11, sizeof(tlvs), tlvs, sizeof(tlvs), 3);
        v2_vector("v2 PROXY TCP4 with TLVs (skipped)", buf, n, PROXY_DONE, 16 + sizeof(tlvs),
                  "10.0.0.1 port 1");
        n = v2(buf, 0x20, 0x00, 0, NULL, 0, 4);
        v2_vector("v2 LOCAL", buf, n, PROXY_DONE, 16, NULL);
        n = v2(buf, 0x20, 0x11, 12, inet, sizeof(inet), 0);
        v2_vector("v2 LOCAL with TCP4 addresses (ignored)", buf, n, PROXY_DONE, 28, NULL);
        n = v2(buf, 0x20, 0xff, 3, NULL, 0, 0);
        v2_vector("v2 LOCAL with a nonsense family (ignored)", buf, n, PROXY_DONE, 19, NULL);
        n = v2(buf, 0x21, 0x00, 0, NULL, 0, 0);
        v2_vector("v2 PROXY UNSPEC", buf, n, PROXY_DONE, 16, NULL);
        n = v2(buf, 0x21, 0x31, 216, NULL, 0, 0);
        v2_vector("v2 PROXY UNIX (the connection's address stands)", buf, n, PROXY_DONE, 232, NULL);
        n = v2(buf, 0x21, 0x12, 12, inet, sizeof(inet), 0);
        v2_vector("v2 PROXY UDP4 (the connection's address stands)", buf, n, PROXY_DONE, 28, NULL);
        n = v2(buf, 0x21, 0x10, 12, inet, sizeof(inet), 0);
        v2_vector("v2 PROXY INET over an unspecified transport (ignored)", buf, n, PROXY_DONE, 28, NULL);
        n = v2(buf, 0x21, 0x11, PROXY_V2_BODY_MAX, inet, sizeof(inet), 0);
        v2_vector("v2 of the largest length", buf, n, PROXY_DONE, PROXY_HEADER_MAX, "192.0.2.1 port 56324");

        n = v2(buf, 0x21, 0x11, PROXY_V2_BODY_MAX + 1, inet, sizeof(inet), 0);
        v2_vector("v2 one byte longer, seen from its first 16", buf, 16, PROXY_OVERSIZED, 0, NULL);
        n = v2(buf, 0x21, 0x11, 0xffff, NULL, 0, 0);
        v2_vector("v2 of length 65535", buf, 16, PROXY_OVERSIZED, 0, NULL);
        n = v2(buf, 0x11, 0x11, 12, inet, sizeof(inet), 0);
        v2_vector("v2 signature with version 1", buf, n, PROXY_UNSUPPORTED, 0, NULL);
        v2_vector("... seen from its first 13 bytes", buf, 13, PROXY_UNSUPPORTED, 0, NULL);
        n = v2(buf, 0x31, 0x11, 12, inet, sizeof(inet), 0);
        v2_vector("v2 signature with version 3", buf, n, PROXY_UNSUPPORTED, 0, NULL);
        n = v2(buf, 0x22, 0x11, 12, inet, sizeof(inet), 0);
        v2_vector("v2 command 2", buf, n, PROXY_UNSUPPORTED, 0, NULL);
        n = v2(buf, 0x2f, 0x11, 12, inet, sizeof(inet), 0);
        v2_vector("v2 command 15", buf, n, PROXY_UNSUPPORTED, 0, NULL);
        n = v2(buf, 0x21, 0x41, 12, inet, sizeof(inet), 0);
        v2_vector("v2 family 4", buf, n, PROXY_BAD_V2, 0, NULL);
        n = v2(buf, 0x21, 0x13, 12, inet, sizeof(inet), 0);
        v2_vector("v2 transport 3", buf, n, PROXY_BAD_V2, 0, NULL);
        n = v2(buf, 0x21, 0x11, 11, inet, 11, 20);
        v2_vector("v2 TCP4 with 11 bytes of addresses", buf, n, PROXY_BAD_V2, 0, NULL);
        n = v2(buf, 0x21, 0x21, 35, inet6, 35, 20);
        v2_vector("v2 TCP6 with 35 bytes of addresses", buf, n, PROXY_BAD_V2, 0, NULL);
        n = v2(buf, 0x21, 0x21, 12, inet, 12, 40);
        v2_vector("v2 TCP6 with the length of TCP4", buf, n, PROXY_BAD_V2, 0, NULL);
        n = v2(buf, 0x21, 0x31, 215, NULL, 0, 20);
        v2_vector("v2 UNIX with 215 bytes of addresses", buf, n, PROXY_BAD_V2, 0, NULL);

        memcpy(buf, sig, 12);
        buf[11] = 'X';
        v2_vector("v2 signature with its last byte wrong", buf, 12, PROXY_MISSING, 0, NULL);
        v2_vector("v2 signature, first 11 bytes", buf, 11, PROXY_NEED_MORE, 0, NULL);
        buf[4] = 'X';
        v2_vector("v2 signature with its fifth byte wrong", buf, 5, PROXY_MISSING, 0, NULL);
}

int main(void) {
        test_v1();
        test_v2();
        return tap_done();
}
