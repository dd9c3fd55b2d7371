/* The echo loop of one stream connection. Small exchanges are copied through a 4 KiB
 * buffer on the stack: one read, one write, nothing to set up. Once a read fills that
 * buffer the peer is streaming, and bytes then move socket -> pipe -> socket with
 * splice(2), never entering user space. The loop only waits (poll) when neither
 * direction moved. It runs in a forked child: system calls through sys.h, no libc. */
#include "echo.h"

#include <fcntl.h>
#include <stdbool.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include "sys.h"

/* At most this much is read ahead of what the peer has taken back: a client that never
 * reads stops being read from, and its bytes wait in the kernel's buffers instead. */
#define SPLICE_WINDOW (64u * 1024u)
#define COPY_SIZE     4096u
/* While bytes keep moving the loop does not wait, so it looks for a stop every so many
 * passes (at most 64 KiB each) instead. */
#define STOP_CHECK_PASSES 16u

struct echo {
        int conn_fd;
        int pipe_fd[2]; /* splice mode when >= 0 */
        bool streaming; /* a read filled the copy buffer: splice once it is empty */
        bool splice_failed;
        char *buf; /* copy mode: buf[start..end) is pending */
        size_t start, end;
        size_t pending;   /* read, not yet written back */
        size_t read_left; /* how much more may be read: all, until a stop */
        bool eof;
        bool stopping;
        bool readable;     /* the last wait saw the connection readable; nothing read since */
        bool pipe_blocked; /* splice() cannot add to the pipe until it drains */
};

/* How much may be read now. The copy buffer is no ring: reads go to its tail, and once
 * the tail is used up, reading waits until all is written back (a read of 0 bytes would
 * return 0, which is EOF). */
static size_t echo_room(const struct echo *e) {
        if (e->pipe_fd[0] >= 0)
                return SPLICE_WINDOW - e->pending;
        return e->start == e->end ? COPY_SIZE : COPY_SIZE - e->end;
}

static void splice_begin(struct echo *e) {
        if (sys_pipe2(e->pipe_fd, O_CLOEXEC | O_NONBLOCK) < 0) {
                e->pipe_fd[0] = e->pipe_fd[1] = -1; /* out of fds or pipe buffers: keep copying */
                e->splice_failed = true;
        }
}

static void splice_end(struct echo *e) {
        if (e->pipe_fd[0] < 0)
                return;
        sys_close(e->pipe_fd[0]);
        sys_close(e->pipe_fd[1]);
        e->pipe_fd[0] = e->pipe_fd[1] = -1;
}

/* True when the next byte to read is TCP urgent data. */
static bool at_urgent_mark(int conn_fd) {
        int at_mark = 0;

        return sys_ioctl(conn_fd, SIOCATMARK, &at_mark) == 0 && at_mark > 0;
}

/* Returns bytes moved in, 0 at EOF, or -errno (-EAGAIN when nothing is there). */
static ssize_t echo_fill(struct echo *e) {
        size_t room = echo_room(e);
        ssize_t n;

        if (room > e->read_left)
                room = e->read_left;
        if (e->pipe_fd[1] >= 0) {
                n = sys_splice(e->conn_fd, e->pipe_fd[1], room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n == -EINVAL && e->pending == 0) {
                        /* This socket cannot splice: copy, from now on. */
                        splice_end(e);
                        e->splice_failed = true;
                        return echo_fill(e);
                }
                /* Readable, yet nothing came, and the pipe holds something: it is full
                 * (16 buffers, however few bytes each holds), or splice() stopped at the
                 * urgent mark. Either way the pipe must drain first: until then, wait
                 * only to write, or poll() would say readable forever. */
                e->pipe_blocked = false;
                if (n == -EAGAIN && e->readable && e->pending > 0) {
                        e->pipe_blocked = true;
                        return -EAGAIN;
                }
                /* splice() never reads across the urgent mark, though the byte there is
                 * inline (SO_OOBINLINE) and poll() says readable: it returns EAGAIN, or 0
                 * once a FIN is queued behind. Copy past the mark once the pipe is empty
                 * (splice again afterwards). The ioctl is made only when a wait said
                 * readable and nothing came, or at EOF. */
                if ((n == 0 || (n == -EAGAIN && e->readable)) && at_urgent_mark(e->conn_fd)) {
                        if (e->pending > 0) {
                                e->pipe_blocked = true;
                                return -EAGAIN;
                        }
                        splice_end(e);
                        return echo_fill(e);
                }
        } else {
                if (e->start == e->end)
                        e->start = e->end = 0;
                n = sys_read(e->conn_fd, e->buf + e->end, room);
                if (n > 0) {
                        e->end += (size_t)n;
                        e->streaming = e->streaming || (size_t)n == COPY_SIZE;
                }
        }
        if (n < 0)
                return n;
        e->readable = false;
        e->read_left -= (size_t)n;
        return n;
}

/* Returns bytes written back, or -errno (-EAGAIN when the socket is full). */
static ssize_t echo_flush(struct echo *e) {
        ssize_t n;

        if (e->pipe_fd[0] >= 0)
                n = sys_splice(e->pipe_fd[0], e->conn_fd, e->pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        else {
                n = sys_send(e->conn_fd, e->buf + e->start, e->end - e->start, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0)
                        e->start += (size_t)n;
        }
        return n;
}

static enum echo_end end_from_errno(int error, struct echo_result *ret) {
        if (error == -ECONNRESET || error == -EPIPE || error == -ETIMEDOUT)
                return ECHO_END_RESET;
        ret->error = error;
        return ECHO_END_ERROR;
}

/* One pass: move what can move without waiting. Returns true if anything moved; sets
 * *ret_end when the connection is over. */
static bool echo_step(struct echo *e, struct echo_result *ret, enum echo_end *ret_end) {
        bool progress = false;
        ssize_t n;

        if (e->streaming && e->pending == 0 && e->pipe_fd[0] < 0 && !e->splice_failed)
                splice_begin(e);

        if (!e->eof && echo_room(e) > 0) {
                n = echo_fill(e);
                if (n > 0) {
                        e->pending += (size_t)n;
                        e->eof = e->read_left == 0;
                        progress = true;
                } else if (n == 0) {
                        e->eof = true;
                        progress = true;
                } else if (n != -EAGAIN && n != -EINTR) {
                        *ret_end = end_from_errno((int)n, ret);
                        return true;
                }
        }
        if (e->pending > 0) {
                n = echo_flush(e);
                if (n > 0) {
                        e->pending -= (size_t)n;
                        ret->n_bytes += (uint64_t)n;
                        progress = true;
                } else if (n != -EAGAIN && n != -EINTR) {
                        *ret_end = end_from_errno((int)n, ret);
                        return true;
                }
        }
        if (e->eof && e->pending == 0)
                *ret_end = ECHO_END_EOF;
        return progress;
}

/* Waits until the connection can move, the deadline (0: none) passes or stop_fd (-1:
 * none) is readable; with no_wait, only looks. Returns 1 if stop_fd is readable, 0, or
 * -errno. */
static int echo_wait(struct echo *e, int stop_fd, uint64_t deadline, bool no_wait) {
        struct pollfd pfds[2] = { { .fd = e->conn_fd }, { .fd = stop_fd, .events = POLLIN } };
        struct timespec ts, *tsp = NULL;
        int r;

        if (!e->eof && echo_room(e) > 0 && !e->pipe_blocked)
                pfds[0].events |= POLLIN;
        if (e->pending > 0)
                pfds[0].events |= POLLOUT;
        if (no_wait) {
                ts = (struct timespec){};
                tsp = &ts;
        } else if (deadline > 0) {
                uint64_t now = sys_now_usec(), left = deadline > now ? deadline - now : 0;
                ts = (struct timespec){ .tv_sec = (time_t)(left / USEC_PER_SEC),
                                        .tv_nsec = (long)(left % USEC_PER_SEC) * 1000 };
                tsp = &ts;
        }
        r = sys_poll(pfds, stop_fd >= 0 ? 2 : 1, tsp);
        if (r < 0)
                return r;
        e->readable = e->readable || (pfds[0].revents & POLLIN);
        return stop_fd >= 0 && (pfds[1].revents & POLLIN);
}

/* How many bytes the peer has sent that are still in the kernel's receive queue. */
static size_t queued_bytes(int conn_fd) {
        int n = 0;

        if (sys_ioctl(conn_fd, FIONREAD, &n) < 0 || n < 0)
                return 0;
        return (size_t)n;
}

/* After a stop, bytes the peer sent after the last read may be waiting, and closing a
 * socket with unread bytes resets the connection: the peer would lose the echo that has
 * left our buffer but not yet reached it. So before the caller closes, wait until the peer
 * has acknowledged all we sent, reading and dropping what it still sends, until deadline
 * (a peer that advertises a zero window would keep us forever). */
static void echo_linger(int conn_fd, char buf[static COPY_SIZE], uint64_t deadline) {
        const struct timespec tick = { .tv_nsec = 10 * 1000 * 1000 };

        for (;;) {
                struct pollfd pfd = { .fd = conn_fd, .events = POLLIN };
                int unacked = 0;
                ssize_t n;

                if (sys_ioctl(conn_fd, SIOCOUTQ, &unacked) < 0 || unacked <= 0 || sys_now_usec() >= deadline)
                        return;
                while ((n = sys_read(conn_fd, buf, COPY_SIZE)) > 0)
                        ;
                if (n < 0 && n != -EAGAIN && n != -EINTR)
                        return;
                /* No event says "all acknowledged": look again every 10 ms. */
                (void)sys_poll(&pfd, n == 0 ? 0 : 1, &tick);
        }
}

void echo_stream(int conn_fd, const struct echo_config *config, struct echo_result *ret) {
        char buf[COPY_SIZE];
        struct echo e = { .conn_fd = conn_fd, .pipe_fd = { -1, -1 }, .buf = buf, .read_left = SIZE_MAX };
        enum echo_end end = _ECHO_END_MAX;
        int stop_fd = config->stop_fd;
        unsigned passes = 0;
        uint64_t deadline = 0, stop_deadline = 0;
        int flags, r, one = 1;

        *ret = (struct echo_result){};
        if (!config->nonblocking) {
                flags = sys_fcntl(conn_fd, F_GETFL, 0);
                if (flags >= 0 && !(flags & O_NONBLOCK))
                        (void)sys_fcntl(conn_fd, F_SETFL, flags | O_NONBLOCK);
        }
        /* Urgent data is data: in line, it is read (and echoed) in order; out of line, a
         * read would skip it. TCP copies the option from the listener; AF_UNIX does not. */
        if (!config->oob_inline)
                (void)sys_setsockopt(conn_fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one));

        for (;;) {
                bool progress = echo_step(&e, ret, &end);
                if (end != _ECHO_END_MAX)
                        break;
                if (e.stopping && sys_now_usec() >= stop_deadline) {
                        end = ECHO_END_STOP; /* out of time to finish: close as it is */
                        break;
                }
                if (progress) {
                        deadline = 0;
                        if (stop_fd < 0 || ++passes < STOP_CHECK_PASSES)
                                continue;
                        passes = 0;
                        r = echo_wait(&e, stop_fd, 0, true);
                } else {
                        if (deadline == 0 && config->idle_timeout_usec > 0)
                                deadline = sys_now_usec() + config->idle_timeout_usec;
                        else if (deadline > 0 && sys_now_usec() >= deadline) {
                                end = ECHO_END_IDLE;
                                break;
                        }
                        r = echo_wait(&e, stop_fd,
                                      e.stopping && (deadline == 0 || stop_deadline < deadline)
                                              ? stop_deadline
                                              : deadline,
                                      false);
                }
                if (r > 0) {
                        /* Stopping: echo what has already arrived (our buffer and the
                         * kernel's queue), then close; whatever comes later is not read.
                         * stop_fd stays readable: it is not looked at again. All of it
                         * within the drain timeout. */
                        stop_fd = -1;
                        e.stopping = true;
                        stop_deadline = sys_now_usec() + config->drain_timeout_usec;
                        e.read_left = queued_bytes(conn_fd);
                        e.eof = e.eof || e.read_left == 0;
                } else if (r < 0 && r != -EINTR) {
                        end = end_from_errno(r, ret);
                        break;
                }
        }
        if (e.stopping && end == ECHO_END_EOF) {
                end = ECHO_END_STOP;
                /* Our FIN goes after the echoed bytes; the peer may still be sending. */
                (void)sys_shutdown(conn_fd, SHUT_WR);
                echo_linger(conn_fd, buf, stop_deadline);
        }
        splice_end(&e);
        ret->end = end;
}

const char *echo_end_to_string(enum echo_end end) {
        static const char *const names[_ECHO_END_MAX] = {
                [ECHO_END_EOF] = "eof",   [ECHO_END_IDLE] = "idle",   [ECHO_END_RESET] = "reset",
                [ECHO_END_STOP] = "stop", [ECHO_END_ERROR] = "error",
        };
        return end < _ECHO_END_MAX ? names[end] : "unknown";
}
