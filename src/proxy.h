/* The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2) that a load
 * balancer sends before the client's bytes: who the client really is. A pure parser: it
 * looks at the bytes received so far and says whether they are a whole header, the start
 * of one, or not one. No I/O, no allocation. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Version 1 is one text line of at most 107 bytes with its CRLF. */
#define PROXY_V1_MAX 107u
/* Version 2: 16 bytes, then the addresses and the TLVs. HAProxy with every TLV it can add
 * (SSL with its sub-TLVs, unique ID up to 128 bytes, authority up to 255, ALPN, CRC32C)
 * stays well under 1 KiB; a declared length beyond this is refused as oversized. */
#define PROXY_V2_HEADER   16u
#define PROXY_V2_BODY_MAX 1024u
#define PROXY_HEADER_MAX  (PROXY_V2_HEADER + PROXY_V2_BODY_MAX)

enum proxy_status {
        PROXY_NEED_MORE,   /* a valid start of a header: wait for more bytes */
        PROXY_DONE,        /* a whole header: see struct proxy_header */
        PROXY_MISSING,     /* the bytes begin with neither signature */
        PROXY_BAD_V1,      /* a malformed version 1 line */
        PROXY_BAD_V2,      /* a malformed version 2 header */
        PROXY_UNSUPPORTED, /* a version 2 header of another version or command */
        PROXY_OVERSIZED,   /* longer than PROXY_V1_MAX or PROXY_HEADER_MAX */
        _PROXY_STATUS_MAX,
};

struct proxy_header {
        size_t length; /* bytes the header takes, payload starts after */
        /* AF_INET or AF_INET6: the client's address and port, and the one it connected
         * to. AF_UNSPEC (LOCAL, UNKNOWN, AF_UNSPEC, AF_UNIX, not a stream): none claimed;
         * the connection's own addresses stand. */
        struct sockaddr_storage source, destination;
        socklen_t address_len;
};

/* Parses buf[0..size). On PROXY_DONE fills *ret (which it may also write otherwise). */
enum proxy_status proxy_parse(const uint8_t *buf, size_t size, struct proxy_header *ret);

/* "malformed v1 header" and the like, for the log. */
const char *proxy_status_to_string(enum proxy_status status);
