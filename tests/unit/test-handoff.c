/* Unit test of handoff.c, the reload state: a round trip through a memfd keeps every field;
 * a wrong magic, a truncated or padded state and inconsistent sizes are refused as not a
 * state; another version is refused as such, yet its children's pids can still be read,
 * also with a layout this build does not know (a longer header, longer entries), never a pid
 * of 0 or below (kill() would take it for a process group or for every process); the
 * descriptors a state names are checked before use. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handoff.h"
#include "tap.h"

#define N_CHILDREN 300

/* Offsets of the stable header's fields (handoff.c): magic 0, version 8, header_size 12,
 * n_children 16, child_size 20, children_offset 24, total_size 32. */
static void put_u32(void *buf, size_t off, uint32_t v) {
        memcpy((char *)buf + off, &v, sizeof(v));
}

static void put_u64(void *buf, size_t off, uint64_t v) {
        memcpy((char *)buf + off, &v, sizeof(v));
}

static struct handoff sample(struct handoff_child *children, size_t n) {
        struct handoff h = {
                .n_served = 123456789012ull,
                .n_refused = 42,
                .udp_echoed = 7,
                .udp_dropped = 3,
                .report_fds = { 9, 10 },
                .n_opened = 2,
                .opened = { { .fd = 5, .created_path = 0 }, { .fd = 6, .created_path = 1 } },
                .n_children = n,
                .children = children,
        };
        for (size_t i = 0; i < n; i++)
                children[i] =
                        (struct handoff_child){ .pid = (int32_t)(1000 + i), .source = 0xabcd0000u + i % 7 };
        return h;
}

static void test_round_trip(void) {
        static struct handoff_child children[N_CHILDREN];
        struct handoff h = sample(children, N_CHILDREN), got;
        void *buf = NULL;
        ssize_t size;
        int fd = handoff_write_fd(&h);
        bool same = true;

        tap(fd >= 0, "the state is written to a memfd");
        size = fd >= 0 ? handoff_read_fd(fd, &buf) : -1;
        tap(size == (ssize_t)handoff_size(N_CHILDREN), "and read back whole");
        tap(size > 0 && handoff_decode(buf, (size_t)size, &got) == 0, "it decodes");
        if (size > 0 && buf) {
                same = got.n_served == h.n_served && got.n_refused == 42 && got.udp_echoed == 7 &&
                       got.udp_dropped == 3 && got.report_fds[0] == 9 && got.report_fds[1] == 10 &&
                       got.n_opened == 2 && got.opened[1].fd == 6 && got.opened[1].created_path == 1 &&
                       got.n_children == N_CHILDREN;
                for (size_t i = 0; same && i < N_CHILDREN; i++)
                        same = got.children[i].pid == children[i].pid &&
                               got.children[i].source == children[i].source;
        }
        tap(size > 0 && same, "every counter, descriptor and child comes back as it was");
        free(buf);
        if (fd >= 0)
                close(fd);

        h.n_children = 0;
        fd = handoff_write_fd(&h);
        size = fd >= 0 ? handoff_read_fd(fd, &buf) : -1;
        tap(size > 0 && handoff_decode(buf, (size_t)size, &got) == 0 && got.n_children == 0,
            "a state without children round-trips too");
        free(buf);
        if (fd >= 0)
                close(fd);
}

static void test_refused(void) {
        static struct handoff_child children[3];
        struct handoff h = sample(children, 3), got;
        size_t size = handoff_size(3);
        char *buf = aligned_alloc(8, size + 64), *copy = aligned_alloc(8, size + 64);
        pid_t pids[8];

        tap(handoff_encode(&h, buf, size - 1) == -ENOBUFS, "encoding into too small a buffer is refused");
        tap(handoff_encode(&h, buf, size) == (ssize_t)size, "encoded");

        memcpy(copy, buf, size);
        copy[0] ^= 1;
        tap(handoff_decode(copy, size, &got) == -EBADMSG && handoff_pids(copy, size, pids, 8) == -EBADMSG,
            "a wrong magic: not a state, no pids");
        for (size_t cut = 0; cut < size; cut += cut < 64 ? 1 : 97)
                if (handoff_decode(buf, cut, &got) != -EBADMSG ||
                    handoff_pids(buf, cut, pids, 8) != -EBADMSG) {
                        tap(false, "truncated to %zu bytes: refused", cut);
                        goto padded;
                }
        tap(true, "truncated anywhere: refused, no pids");
padded:
        tap(handoff_decode(buf, size + 8, &got) == -EBADMSG, "trailing bytes: refused");

        memcpy(copy, buf, size);
        put_u32(copy, 16, 1000000); /* n_children past the end */
        tap(handoff_decode(copy, size, &got) == -EBADMSG && handoff_pids(copy, size, pids, 8) == -EBADMSG,
            "more children than the state holds: refused");
        memcpy(copy, buf, size);
        put_u32(copy, 20, 0); /* child_size */
        tap(handoff_pids(copy, size, pids, 8) == -EBADMSG, "entries of no size: refused");
        memcpy(copy, buf, size);
        put_u64(copy, 24, size + 1); /* children_offset */
        tap(handoff_decode(copy, size, &got) == -EBADMSG, "children past the end: refused");
        memcpy(copy, buf, size);
        memcpy(copy + size - sizeof(struct handoff_child), &(int32_t){ 0 }, sizeof(int32_t));
        tap(handoff_decode(copy, size, &got) == -EBADMSG, "a pid of 0: refused");
        tap(handoff_pids(copy, size, pids, 8) == -EBADMSG,
            "... and no pids read from it (kill(0) is a group)");
        memcpy(copy, buf, size);
        put_u32(copy, 8, HANDOFF_VERSION + 1);
        memcpy(copy + size - sizeof(struct handoff_child), &(int32_t){ -1 }, sizeof(int32_t));
        tap(handoff_pids(copy, size, pids, 8) == -EBADMSG,
            "another version with a pid of -1: no pids (kill(-1) is every process)");

        memcpy(copy, buf, size);
        put_u32(copy, 8, HANDOFF_VERSION + 1);
        tap(handoff_decode(copy, size, &got) == -EPROTONOSUPPORT, "another version: refused as such");
        tap(handoff_pids(copy, size, pids, 8) == 3 && pids[0] == 1000 && pids[2] == 1002,
            "its children's pids can still be read");
        tap(handoff_pids(copy, size, pids, 2) == 3 && pids[1] == 1001,
            "up to the room given, with the count");
        free(buf);
        free(copy);
}

/* A future layout: a longer fixed part and 24-byte entries, pid first. */
static void test_future_layout(void) {
        size_t header = 1024, stride = 24, n = 4, size = header + n * stride;
        char *buf = aligned_alloc(8, size);
        struct handoff got;
        pid_t pids[4];

        memset(buf, 0, size);
        memcpy(buf, "ECHODHO\n", 8);
        put_u32(buf, 8, 9);
        put_u32(buf, 12, (uint32_t)header);
        put_u32(buf, 16, (uint32_t)n);
        put_u32(buf, 20, (uint32_t)stride);
        put_u64(buf, 24, header);
        put_u64(buf, 32, size);
        for (size_t i = 0; i < n; i++)
                memcpy(buf + header + i * stride, &(int32_t){ (int32_t)(500 + i) }, sizeof(int32_t));
        tap(handoff_decode(buf, size, &got) == -EPROTONOSUPPORT, "version 9 with a longer layout: refused");
        tap(handoff_pids(buf, size, pids, 4) == 4 && pids[0] == 500 && pids[3] == 503,
            "its pids are read at its own stride");
        free(buf);
}

/* The descriptors a state names (handoff_fds_invalid()): a state as the image before writes
 * it passes; one naming stdout, one fd twice, the state's own fd or a passed socket, a
 * report fd that is a stream socket, or a --listen fd that is no socket is refused. */
static void test_fds(void) {
        int report[2], stream[2], listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int state_fd = memfd_create("state", MFD_CLOEXEC);
        struct handoff h = { .n_opened = 1 };
        const char *why;

        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, report) < 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, stream) < 0 || listen_fd < 0 || state_fd < 0) {
                tap(false, "descriptors for the test");
                return;
        }
        h.report_fds[0] = report[0];
        h.report_fds[1] = report[1];
        h.opened[0].fd = listen_fd;
        tap(handoff_state_fd_valid(state_fd) && !handoff_state_fd_valid(1) &&
                    !handoff_state_fd_valid(listen_fd),
            "the state's fd: a memfd of 3 or above, not stdout nor a socket");
        why = handoff_fds_invalid(&h, state_fd, 0);
        tap(!why, "a state's descriptors as the image before writes them pass (%s)", why ? why : "");
        tap(handoff_fds_invalid(&h, state_fd, listen_fd) != NULL,
            "a --listen fd among the passed sockets is refused");
        h.report_fds[1] = 1;
        tap(handoff_fds_invalid(&h, state_fd, 0) != NULL, "a report fd of 1 (stdout) is refused");
        h.report_fds[1] = report[0];
        tap(handoff_fds_invalid(&h, state_fd, 0) != NULL, "one fd named twice is refused");
        h.report_fds[0] = stream[0];
        h.report_fds[1] = stream[1];
        tap(handoff_fds_invalid(&h, state_fd, 0) != NULL, "report fds that are stream sockets are refused");
        h.report_fds[0] = h.report_fds[1] = -1;
        h.opened[0].fd = state_fd;
        tap(handoff_fds_invalid(&h, state_fd, 0) != NULL, "a --listen fd that is the state's is refused");
        h.opened[0].fd = report[0] + 100;
        tap(handoff_fds_invalid(&h, state_fd, 0) != NULL, "a --listen fd that is not open is refused");
        close(report[0]);
        close(report[1]);
        close(stream[0]);
        close(stream[1]);
        close(listen_fd);
        close(state_fd);
}

int main(void) {
        test_round_trip();
        test_refused();
        test_future_layout();
        test_fds();
        return tap_done();
}
