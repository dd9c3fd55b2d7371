/* The PROXY protocol parser (see proxy.h). Strict where the specification is: version 1
 * addresses in canonical form, ports without leading zeros, single spaces; version 2
 * lengths checked against the address family. What a receiver must ignore is ignored:
 * the addresses of LOCAL and UNKNOWN, the TLVs after the addresses. */
#include "proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

static const uint8_t v2_signature[12] = {
        '\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n'
};
static const char v1_signature[6] = "PROXY ";

#define V2_VERSION   0x20u
#define V2_CMD_LOCAL 0x0u
#define V2_CMD_PROXY 0x1u
#define V2_AF_UNSPEC 0x0u
#define V2_AF_INET   0x1u
#define V2_AF_INET6  0x2u
#define V2_AF_UNIX   0x3u
#define V2_STREAM    0x1u
#define V2_INET_LEN  12u  /* two IPv4 addresses, two ports */
#define V2_INET6_LEN 36u  /* two IPv6 addresses, two ports */
#define V2_UNIX_LEN  216u /* two 108-byte paths */

/* One token of a version 1 line: [start, start + len). */
struct token {
        const char *start;
        size_t len;
};

/* "0".."65535", no sign, no leading zero. Returns the port or -1. */
static int parse_port(struct token t) {
        unsigned v = 0;

        if (t.len == 0 || t.len > 5 || (t.len > 1 && t.start[0] == '0'))
                return -1;
        for (size_t i = 0; i < t.len; i++) {
                if (t.start[i] < '0' || t.start[i] > '9')
                        return -1;
                v = v * 10 + (unsigned)(t.start[i] - '0');
        }
        return v <= 65535 ? (int)v : -1;
}

/* A numeric address of family into *ret (a sockaddr_in or sockaddr_in6, port 0). inet_pton
 * takes IPv4 only as four decimal numbers without leading zeros, as the line must. */
static bool parse_address(struct token t, int family, struct sockaddr_storage *ret) {
        char text[INET6_ADDRSTRLEN];

        if (t.len == 0 || t.len >= sizeof(text))
                return false;
        memcpy(text, t.start, t.len);
        text[t.len] = '\0';
        memset(ret, 0, sizeof(*ret));
        ret->ss_family = (sa_family_t)family;
        if (family == AF_INET)
                return inet_pton(AF_INET, text, &((struct sockaddr_in *)ret)->sin_addr) == 1;
        return inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)ret)->sin6_addr) == 1;
}

static void set_port(struct sockaddr_storage *ss, int port) {
        if (ss->ss_family == AF_INET)
                ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
        else
                ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* The words of line[0..len) after "PROXY ", separated by exactly one space. Returns how
 * many (at most max), or -1 if one is empty or there are more. */
static int split(const char *line, size_t len, struct token *tokens, int max) {
        int n = 0;
        size_t start = 0;

        for (size_t i = 0; i <= len; i++) {
                if (i < len && line[i] != ' ')
                        continue;
                if (i == start || n == max)
                        return -1;
                tokens[n++] = (struct token){ line + start, i - start };
                start = i + 1;
        }
        return n;
}

/* The line between "PROXY " and CRLF. */
static enum proxy_status parse_v1_line(const char *line, size_t len, struct proxy_header *ret) {
        struct token t[5];
        int family, source_port, destination_port;

        if (len >= 7 && memcmp(line, "UNKNOWN", 7) == 0 && (len == 7 || line[7] == ' '))
                return PROXY_DONE; /* whatever follows is to be ignored */
        if (split(line, len, t, 5) != 5 || t[0].len != 4)
                return PROXY_BAD_V1;
        if (memcmp(t[0].start, "TCP4", 4) == 0)
                family = AF_INET;
        else if (memcmp(t[0].start, "TCP6", 4) == 0)
                family = AF_INET6;
        else
                return PROXY_BAD_V1;
        source_port = parse_port(t[3]);
        destination_port = parse_port(t[4]);
        if (!parse_address(t[1], family, &ret->source) || !parse_address(t[2], family, &ret->destination) ||
            source_port < 0 || destination_port < 0)
                return PROXY_BAD_V1;
        set_port(&ret->source, source_port);
        set_port(&ret->destination, destination_port);
        ret->address_len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        return PROXY_DONE;
}

static enum proxy_status parse_v1(const uint8_t *buf, size_t size, struct proxy_header *ret) {
        /* The CR may be at index PROXY_V1_MAX - 2 at the latest, its LF right after it. */
        size_t n = size < PROXY_V1_MAX - 1 ? size : PROXY_V1_MAX - 1;

        for (size_t i = sizeof(v1_signature); i < n; i++) {
                if (buf[i] == '\r') {
                        if (i + 1 == size)
                                return PROXY_NEED_MORE;
                        if (buf[i + 1] != '\n')
                                return PROXY_BAD_V1;
                        ret->length = i + 2;
                        return parse_v1_line((const char *)buf + sizeof(v1_signature),
                                             i - sizeof(v1_signature), ret);
                }
                /* Only printable text before the CR: a stray byte fails at once. */
                if (buf[i] < 0x20 || buf[i] > 0x7e)
                        return PROXY_BAD_V1;
        }
        return size >= PROXY_V1_MAX - 1 ? PROXY_OVERSIZED : PROXY_NEED_MORE;
}

static uint16_t load_be16(const uint8_t *p) {
        return (uint16_t)(p[0] << 8 | p[1]);
}

/* The addresses of a PROXY command over a stream, from the start of the body. */
static void v2_addresses(const uint8_t *body, unsigned family, struct proxy_header *ret) {
        size_t addr_size = family == V2_AF_INET ? 4 : 16;
        const uint8_t *ports = body + 2 * addr_size;

        if (family == V2_AF_INET) {
                struct sockaddr_in *s = (struct sockaddr_in *)&ret->source;
                struct sockaddr_in *d = (struct sockaddr_in *)&ret->destination;
                s->sin_family = d->sin_family = AF_INET;
                memcpy(&s->sin_addr, body, 4);
                memcpy(&d->sin_addr, body + 4, 4);
                memcpy(&s->sin_port, ports, 2);
                memcpy(&d->sin_port, ports + 2, 2);
                ret->address_len = sizeof(struct sockaddr_in);
        } else {
                struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ret->source;
                struct sockaddr_in6 *d = (struct sockaddr_in6 *)&ret->destination;
                s->sin6_family = d->sin6_family = AF_INET6;
                memcpy(&s->sin6_addr, body, 16);
                memcpy(&d->sin6_addr, body + 16, 16);
                memcpy(&s->sin6_port, ports, 2);
                memcpy(&d->sin6_port, ports + 2, 2);
                ret->address_len = sizeof(struct sockaddr_in6);
        }
}

static enum proxy_status parse_v2(const uint8_t *buf, size_t size, struct proxy_header *ret) {
        static const size_t min_len[] = { [V2_AF_UNSPEC] = 0,
                                          [V2_AF_INET] = V2_INET_LEN,
                                          [V2_AF_INET6] = V2_INET6_LEN,
                                          [V2_AF_UNIX] = V2_UNIX_LEN };
        unsigned command, family, transport;
        size_t len;

        if (size <= sizeof(v2_signature))
                return PROXY_NEED_MORE;
        if ((buf[12] & 0xf0) != V2_VERSION || (buf[12] & 0x0f) > V2_CMD_PROXY)
                return PROXY_UNSUPPORTED;
        command = buf[12] & 0x0f;
        if (size < PROXY_V2_HEADER)
                return PROXY_NEED_MORE;
        family = buf[13] >> 4;
        transport = buf[13] & 0x0f;
        len = load_be16(buf + 14);
        if (len > PROXY_V2_BODY_MAX)
                return PROXY_OVERSIZED;
        /* LOCAL: "the receiver must discard the protocol block including the family". */
        if (command == V2_CMD_PROXY && (family > V2_AF_UNIX || transport > 2 || len < min_len[family]))
                return PROXY_BAD_V2;
        if (size < PROXY_V2_HEADER + len)
                return PROXY_NEED_MORE;
        ret->length = PROXY_V2_HEADER + len;
        if (command == V2_CMD_PROXY && transport == V2_STREAM &&
            (family == V2_AF_INET || family == V2_AF_INET6))
                v2_addresses(buf + PROXY_V2_HEADER, family, ret);
        return PROXY_DONE;
}

enum proxy_status proxy_parse(const uint8_t *buf, size_t size, struct proxy_header *ret) {
        size_t n;

        memset(ret, 0, sizeof(*ret));
        if (size == 0)
                return PROXY_NEED_MORE;
        if (buf[0] == 'P') {
                n = size < sizeof(v1_signature) ? size : sizeof(v1_signature);
                if (memcmp(buf, v1_signature, n) != 0)
                        return PROXY_MISSING;
                return parse_v1(buf, size, ret);
        }
        n = size < sizeof(v2_signature) ? size : sizeof(v2_signature);
        if (memcmp(buf, v2_signature, n) != 0)
                return PROXY_MISSING;
        return parse_v2(buf, size, ret);
}

const char *proxy_status_to_string(enum proxy_status status) {
        static const char *const names[_PROXY_STATUS_MAX] = {
                [PROXY_NEED_MORE] = "incomplete header",
                [PROXY_DONE] = "header",
                [PROXY_MISSING] = "no PROXY header",
                [PROXY_BAD_V1] = "malformed v1 header",
                [PROXY_BAD_V2] = "malformed v2 header",
                [PROXY_UNSUPPORTED] = "unsupported v2 version or command",
                [PROXY_OVERSIZED] = "oversized header",
        };
        return status < _PROXY_STATUS_MAX ? names[status] : "unknown";
}
