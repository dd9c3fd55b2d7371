/* A client's process. The child is short and paranoid: of its descriptors it keeps only
 * its connection, the stop signalfd, under journald the socket it reports on, and 0-2 as
 * it inherited them (stderr: the log), has no NOTIFY_SOCKET to talk to the service
 * manager with (the main process keeps it out of the environment, see notify.c), and runs
 * no libc after fork(): system calls through sys.h, its log line built by line.c, its
 * peer's name written by the parent. So it touches only echod's own pages, and leaves with
 * exit_group() before anything of the parent's (atexit handlers, stdio) could run twice. */
#include "client.h"

#include "line.h"
#include "sys.h"

/* Errors a connected stream socket can end with, besides a reset (echo.c). */
static const char *error_text(int error) {
        switch (error) {
        case EHOSTUNREACH:
                return "No route to host";
        case ENETUNREACH:
                return "Network is unreachable";
        case ENETDOWN:
                return "Network is down";
        case EHOSTDOWN:
                return "Host is down";
        case ENOBUFS:
                return "No buffer space available";
        case ENOMEM:
                return "Cannot allocate memory";
        case ENOTCONN:
                return "Transport endpoint is not connected";
        case EIO:
                return "Input/output error";
        default:
                return NULL;
        }
}

/* Sends the connection's report to the parent (report_fd >= 0). False if not sent: the
 * caller writes the line itself, so nothing is lost. Never inlined, and called only with a
 * report fd: its buffer must not deepen the stack of every child (each page a child writes
 * is a page of its own while it lives). */
static __attribute__((noinline)) bool client_report_send(const struct client *c,
                                                         const struct echo_result *result,
                                                         uint64_t duration_usec,
                                                         const struct log_line *line) {
        struct client_report report;
        size_t n_text = line->n - LOG_LINE_PREFIX, n_peer = c->peer_len;
        const char *peer = (const char *)&c->peer;
        /* volatile: a plain copy loop may be compiled into a call of libc's memcpy() */
        volatile char *to;

        if (LOG_INFO > log_max_level)
                return false;
        report.pid = sys_getpid();
        report.end = (int32_t)result->end;
        report.error = result->end == ECHO_END_ERROR ? -result->error : 0;
        report.n_bytes = result->n_bytes;
        report.duration_usec = duration_usec;
        if (n_peer > sizeof(report.peer))
                n_peer = 0; /* AF_UNIX: its text says all there is */
        report.peer_len = (uint32_t)n_peer;
        to = (volatile char *)&report.peer;
        for (size_t i = 0; i < sizeof(report.peer); i++)
                to[i] = i < n_peer ? peer[i] : 0;
        to = report.text;
        for (size_t i = 0; i < n_text; i++)
                to[i] = line->text[LOG_LINE_PREFIX + i];
        return sys_send(c->report_fd, &report, CLIENT_REPORT_HEADER_SIZE + n_text,
                        MSG_DONTWAIT | MSG_NOSIGNAL) >= 0;
}

enum echo_end client_serve(const struct client *c) {
        struct echo_result result;
        struct log_line line;
        uint64_t end_usec;
        struct echo_config config = {
                .idle_timeout_usec = c->idle_timeout_usec,
                .drain_timeout_usec = c->drain_timeout_usec,
                .nonblocking = c->nonblocking,
                .oob_inline = c->oob_inline,
                .stop_fd = c->stop_fd,
        };

        echo_stream(c->conn_fd, &config, &result);

        /* connection from 127.0.0.1 port 40000 (pid 1234) ended: eof, 64 bytes echoed in 0.002 s */
        end_usec = sys_now_usec();
        log_line_start(&line);
        log_line_str(&line, "connection from ");
        log_line_str(&line, c->peer_text);
        log_line_str(&line, " (pid ");
        log_line_u64(&line, (uint64_t)sys_getpid());
        log_line_str(&line, ") ended: ");
        log_line_str(&line, echo_end_to_string(result.end));
        if (result.end == ECHO_END_ERROR) {
                const char *text = error_text(-result.error);
                log_line_str(&line, " (");
                if (text)
                        log_line_str(&line, text);
                else {
                        log_line_str(&line, "errno ");
                        log_line_u64(&line, (uint64_t)-result.error);
                }
                log_line_str(&line, ")");
        }
        log_line_str(&line, ", ");
        log_line_u64(&line, result.n_bytes);
        log_line_str(&line, " bytes echoed in ");
        log_line_seconds(&line, end_usec - c->start_usec);
        log_line_str(&line, " s");
        /* Closed first: the client is done whether or not its line or report is taken at once. */
        sys_close(c->conn_fd);
        if (c->report_fd < 0 || !client_report_send(c, &result, end_usec - c->start_usec, &line))
                log_line_emit(LOG_INFO, &line);
        return result.end;
}

/* Closes every descriptor from 3 up but those in keep (-1: none): with close_range(), or
 * where it is refused (fd_max > 0), one by one up to fd_max. */
static void close_all_but(int keep0, int keep1, int keep2, int fd_max) {
        int keep[3] = { keep0, keep1, keep2 }, lo = 3;

        if (fd_max > 0) {
                for (int fd = 3; fd <= fd_max; fd++)
                        if (fd != keep[0] && fd != keep[1] && fd != keep[2])
                                (void)sys_close(fd);
                return;
        }
        /* Sorted, then the gaps between them closed. */
        for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2 - i; j++)
                        if (keep[j] > keep[j + 1]) {
                                int t = keep[j];
                                keep[j] = keep[j + 1];
                                keep[j + 1] = t;
                        }
        for (int i = 0; i < 3; i++) {
                if (keep[i] < lo)
                        continue;
                if (keep[i] > lo)
                        sys_close_range((unsigned)lo, (unsigned)keep[i] - 1);
                lo = keep[i] + 1;
        }
        sys_close_range((unsigned)lo, ~0u);
}

/* Never inlined, LTO included: tests/unit/test_child_syms.py follows the child's code from here
 * in the linked binary. */
__attribute__((noinline)) _Noreturn void client_run_child(const struct client *c) {
        /* The stop signals stay blocked, read through stop_fd; SIGCHLD and SIGHUP, blocked
         * in the parent for its signalfd, get their default actions back. No handler is
         * installed in echod, so there is none to reset. */
        sys_sigmask_set(SYS_SIGBIT(SIGTERM) | SYS_SIGBIT(SIGINT));

        /* Listeners and anything else of the parent's: only stdin, stdout, stderr (the
         * log), the connection, stop_fd and report_fd stay. */
        close_all_but(c->conn_fd, c->stop_fd, c->report_fd,
                      c->fd_max > 0 && c->conn_fd > c->fd_max ? c->conn_fd : c->fd_max);

        sys_exit((int)client_serve(c));
}
