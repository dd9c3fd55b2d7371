/* libFuzzer target: addr_parse() and the formatters.
 *
 * Mode byte 0 (even): the rest is a [HOST:]PORT string. Whatever addr_parse() accepts must
 * be a complete IPv4/IPv6 sockaddr with a port, and must round-trip: addr_format_local()
 * writes it back as text that addr_parse() reads as the same sockaddr (an IPv4-mapped IPv6
 * address may come back as its IPv4 form: same port, same source key); the source key
 * formats (addr_format_source) to text naming the same group.
 * Mode byte odd: the rest is raw sockaddr bytes of any family and length; the formatters
 * must stay inside their buffers and write only printable text. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "addr.h"

#define CHECK(cond)                                                                                          \
        do {                                                                                                 \
                if (!(cond)) {                                                                               \
                        fprintf(stderr, "fuzz_addr: check failed: %s (line %d)\n", #cond, __LINE__);         \
                        abort();                                                                             \
                }                                                                                            \
        } while (0)

static void check_text(const char *buf, size_t size) {
        size_t n = strnlen(buf, size);

        CHECK(n < size);
        for (size_t i = 0; i < n; i++)
                CHECK(buf[i] >= 0x20 && buf[i] < 0x7f);
}

static uint16_t port_of(const struct sockaddr_storage *ss) {
        return ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                        : ((const struct sockaddr_in6 *)ss)->sin6_port;
}

static void check_source_roundtrip(uint64_t key) {
        char text[ADDR_TEXT_MAX], value[ADDR_TEXT_MAX + 16];
        struct sockaddr_storage ss;
        socklen_t len;
        char *slash;

        addr_format_source(key, text, sizeof(text));
        check_text(text, sizeof(text));
        if (strncmp(text, "fe80::%", 7) == 0) {
                /* A link-local /64 with its interface (addr.c): a form for the log only, no
                 * address --listen takes; the key keeps the prefix and the interface. */
                CHECK(key >> 32 == 0xfe800000u && (uint32_t)key != 0);
                CHECK(strtoul(text + 7, &slash, 10) == (uint32_t)key && strcmp(slash, "/64") == 0);
                return;
        }
        slash = strchr(text, '/');
        if (slash) {
                CHECK(strcmp(slash, "/64") == 0);
                *slash = '\0';
                snprintf(value, sizeof(value), "[%s]:1", text);
        } else
                snprintf(value, sizeof(value), "%s:1", text);
        CHECK(addr_parse(value, &ss, &len) == 0);
        CHECK(addr_source_key((struct sockaddr *)&ss, len) == key);
}

static void fuzz_parse(const uint8_t *data, size_t size) {
        char value[512], text[ADDR_TEXT_MAX];
        struct sockaddr_storage ss, ss2;
        socklen_t len = 0, len2 = 0;
        uint64_t key;

        if (size >= sizeof(value))
                size = sizeof(value) - 1;
        memcpy(value, data, size);
        value[size] = '\0';

        memset(&ss, 0xa5, sizeof(ss));
        if (addr_parse(value, &ss, &len) != 0) {
                CHECK(addr_parse(value, NULL, NULL) != 0);
                return;
        }
        CHECK(addr_parse(value, NULL, NULL) == 0);
        CHECK((ss.ss_family == AF_INET && len == sizeof(struct sockaddr_in)) ||
              (ss.ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6)));
        CHECK(port_of(&ss) != 0);
        if (ss.ss_family == AF_INET6) {
                CHECK(((struct sockaddr_in6 *)&ss)->sin6_flowinfo == 0);
                CHECK(((struct sockaddr_in6 *)&ss)->sin6_scope_id == 0);
        }

        addr_format_local((struct sockaddr *)&ss, len, text, sizeof(text));
        check_text(text, sizeof(text));
        memset(&ss2, 0x5a, sizeof(ss2));
        if (addr_parse(text, &ss2, &len2) != 0) {
                fprintf(stderr, "fuzz_addr: '%s' formats as '%s', which does not parse\n", value, text);
                abort();
        }
        key = addr_source_key((struct sockaddr *)&ss, len);
        CHECK(addr_source_key((struct sockaddr *)&ss2, len2) == key);
        CHECK(port_of(&ss2) == port_of(&ss));
        if (!(ss.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&ss)->sin6_addr))) {
                if (len2 != len || memcmp(&ss, &ss2, len) != 0) {
                        fprintf(stderr, "fuzz_addr: '%s' formats as '%s', which parses differently\n", value,
                                text);
                        abort();
                }
        }

        addr_format_peer((struct sockaddr *)&ss, len, text, sizeof(text));
        check_text(text, sizeof(text));
        CHECK(strstr(text, " port ") != NULL);

        CHECK(key != ADDR_SOURCE_NONE);
        /* IPv4 keys (ff00::/8 tag) never equal a non-multicast IPv6 /64. */
        if (ss.ss_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&ss)->sin6_addr) &&
            ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr[0] != 0xff)
                CHECK((key >> 56) != 0xff);
        check_source_roundtrip(key);
}

static void fuzz_raw(const uint8_t *data, size_t size) {
        struct sockaddr_storage ss;
        char text[ADDR_TEXT_MAX], small[7];
        socklen_t len;

        if (size < 2)
                return;
        /* A length as getsockname()/accept() can return: at most the family's size. */
        len = data[0] % (sizeof(struct sockaddr_un) + 1);
        data++;
        size--;
        memset(&ss, 0, sizeof(ss));
        memcpy(&ss, data, size < sizeof(ss) ? size : sizeof(ss));
        if (len < sizeof(sa_family_t))
                len = sizeof(sa_family_t);
        if ((ss.ss_family == AF_INET && len < sizeof(struct sockaddr_in)) ||
            (ss.ss_family == AF_INET6 && len < sizeof(struct sockaddr_in6)))
                len = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);

        addr_format_local((struct sockaddr *)&ss, len, text, sizeof(text));
        check_text(text, sizeof(text));
        addr_format_local((struct sockaddr *)&ss, len, small, sizeof(small));
        check_text(small, sizeof(small));
        addr_format_peer((struct sockaddr *)&ss, len, text, sizeof(text));
        check_text(text, sizeof(text));
        addr_format_peer((struct sockaddr *)&ss, len, small, sizeof(small));
        check_text(small, sizeof(small));
        check_source_roundtrip(addr_source_key((struct sockaddr *)&ss, len) == ADDR_SOURCE_NONE
                                       ? 0xff00000000000000ull
                                       : addr_source_key((struct sockaddr *)&ss, len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        if (data[0] & 1)
                fuzz_raw(data + 1, size - 1);
        else
                fuzz_parse(data + 1, size - 1);
        return 0;
}
