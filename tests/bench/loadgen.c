/* Load generator for echo servers (RFC 862 over TCP): rate, bulk, pingpong, hold and the
 * generator's own bulk ceiling. epoll, libc only. Every run prints one line of key=value
 * pairs on stdout so that a script can take medians; diagnostics go to stderr. Every payload
 * that a line-buffered server must echo ends with '\n'. This file owns the command line; each
 * mode has its own file (rate.c, bulk.c, pingpong.c, hold.c), the shared helpers common.c. */
#include "loadgen.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
        fputs("Usage: loadgen MODE [-H HOST] -p PORT [OPTION]...\n"
              "  rate      -c CLIENTS -d SECONDS    connect/send 64 B/echo/close loops\n"
              "  bulk      -c CONNS -n BYTES [-d S] stream and verify BYTES in total (stop\n"
              "                                     sending after S seconds if given)\n"
              "  ceiling   -c CONNS -n BYTES        bulk against a built-in no-op sink (no -p)\n"
              "  pingpong  -n COUNT -d SECONDS [-s] 1-byte round trips (-s: 2 bytes, 2 writes)\n"
              "  hold      -n CONNS [-P PID]        hold verified connections, read PID's tree\n"
              "  -t SECONDS  per-connection timeout (default 10)\n"
              "  -S          do not spread sources over 127.0.0.2-251\n"
              "  -W          bulk/ceiling: send with send(2) instead of vmsplice+splice\n"
              "BYTES take a K, M or G suffix (binary).\n",
              stderr);
        exit(64);
}

static uint64_t parse_size(const char *s) {
        char *end;
        uint64_t v = strtoull(s, &end, 10);
        switch (*end) {
        case 'G':
                v <<= 10;
                __attribute__((fallthrough));
        case 'M':
                v <<= 10;
                __attribute__((fallthrough));
        case 'K':
                v <<= 10;
                end++;
                break;
        default:
                break;
        }
        if (*end || end == s)
                usage();
        return v;
}

int main(int argc, char **argv) {
        if (argc < 2)
                usage();
        const char *mode = argv[1];
        struct opts o = { .host = "127.0.0.1",
                          .port = 0,
                          .clients = 1,
                          .seconds = 3,
                          .amount = 0,
                          .pid = 0,
                          .split = false,
                          .spread = true,
                          .timeout = 10 };
        optind = 2;
        int opt;
        while ((opt = getopt(argc, argv, "H:p:c:d:n:P:t:sSW")) != -1) {
                switch (opt) {
                case 'H':
                        o.host = optarg;
                        break;
                case 'p':
                        o.port = atoi(optarg);
                        break;
                case 'c':
                        o.clients = atol(optarg);
                        break;
                case 'd':
                        o.seconds = atof(optarg);
                        o.seconds_set = true;
                        break;
                case 'n':
                        o.amount = parse_size(optarg);
                        break;
                case 'P':
                        o.pid = (pid_t)atoi(optarg);
                        break;
                case 't':
                        o.timeout = atof(optarg);
                        break;
                case 's':
                        o.split = true;
                        break;
                case 'S':
                        o.spread = false;
                        break;
                case 'W':
                        copy_send = true;
                        break;
                default:
                        usage();
                }
        }
        if (o.clients < 1 || o.seconds <= 0 || o.timeout <= 0)
                usage();
        signal(SIGPIPE, SIG_IGN);
        setvbuf(stdout, NULL, _IOLBF, 0);
        bool ceiling = strcmp(mode, "ceiling") == 0;
        if (!ceiling) {
                dest.sin_family = AF_INET;
                dest.sin_port = htons((uint16_t)o.port);
                if (o.port <= 0 || o.port > 65535 || inet_pton(AF_INET, o.host, &dest.sin_addr) != 1)
                        usage();
                if ((ntohl(dest.sin_addr.s_addr) >> 24) != 127)
                        o.spread = false;
        } else {
                o.spread = false;
        }
        if (strcmp(mode, "rate") == 0)
                mode_rate(&o);
        else if (strcmp(mode, "bulk") == 0 || ceiling)
                mode_bulk(&o, ceiling);
        else if (strcmp(mode, "pingpong") == 0) {
                if (o.amount == 0)
                        o.amount = 10000;
                mode_pingpong(&o);
        } else if (strcmp(mode, "hold") == 0) {
                if (o.amount == 0)
                        usage();
                mode_hold(&o);
        } else
                usage();
        return 0;
}
