/* A client's process. The child is short and paranoid: it keeps only its connection and
 * stderr, has no NOTIFY_SOCKET to talk to the service manager with (the main process keeps
 * it out of the environment, see notify.c), and leaves with _exit() so nothing of the
 * parent's (atexit handlers, stdio buffers) runs twice. It runs little code on purpose:
 * every libc page it touches after fork() costs it a page fault, so its log line is built
 * without stdio and its signal setup is prepared by the parent. */
#include "client.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "clock.h"
#include "log.h"

static volatile sig_atomic_t stop_requested;
static sigset_t child_mask; /* SIGTERM and SIGINT: the stop signals, blocked but in ppoll */
static sigset_t poll_mask;  /* nothing blocked while waiting */

static void on_stop(int sig) {
        (void)sig;
        stop_requested = 1;
}

void client_setup(void) {
        struct sigaction sa = { .sa_handler = on_stop };

        /* Installed once, before the first fork, and inherited. In the accept loop the
         * handler never runs: the stop signals stay blocked there and are read from the
         * signalfd. */
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigemptyset(&poll_mask);
        sigemptyset(&child_mask);
        sigaddset(&child_mask, SIGTERM);
        sigaddset(&child_mask, SIGINT);
}

static void append_peer(struct log_line *l, const struct client *c) {
        struct ucred cred;
        socklen_t len = sizeof(cred);

        if (c->peer.ss_family == AF_INET || c->peer.ss_family == AF_INET6) {
                addr_append_peer(l, (const struct sockaddr *)&c->peer, c->peer_len);
                return;
        }
        /* AF_UNIX peers have no useful address: name the process behind them. */
        if (getsockopt(c->conn_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_line_str(l, "unix");
                return;
        }
        log_line_str(l, "unix pid ");
        log_line_u64(l, (uint64_t)cred.pid);
        log_line_str(l, " uid ");
        log_line_u64(l, cred.uid);
}

enum echo_end client_serve(const struct client *c) {
        struct echo_result result;
        struct log_line line = {};
        struct echo_config config = {
                .idle_timeout_usec = c->idle_timeout_usec,
                .nonblocking = c->nonblocking,
                .stop = &stop_requested,
                .poll_mask = &poll_mask,
        };

        echo_stream(c->conn_fd, &config, &result);

        /* connection from 127.0.0.1 port 40000 (pid 1234) ended: eof, 64 bytes echoed in 0.002 s */
        log_line_str(&line, "connection from ");
        append_peer(&line, c);
        log_line_str(&line, " (pid ");
        log_line_u64(&line, (uint64_t)getpid());
        log_line_str(&line, ") ended: ");
        log_line_str(&line, echo_end_to_string(result.end));
        if (result.end == ECHO_END_ERROR) {
                log_line_str(&line, " (");
                log_line_str(&line, strerrordesc_np(-result.error) ?: "unknown error");
                log_line_str(&line, ")");
        }
        log_line_str(&line, ", ");
        log_line_u64(&line, result.n_bytes);
        log_line_str(&line, " bytes echoed in ");
        log_line_seconds(&line, clock_now_usec() - c->start_usec);
        log_line_str(&line, " s");
        log_line_emit(LOG_INFO, &line);

        close(c->conn_fd);
        return result.end;
}

_Noreturn void client_run_child(const struct client *c) {
        /* Only the stop signals stay blocked (client_serve() waits for them); SIGCHLD and
         * SIGHUP, blocked in the parent for its signalfd, get their defaults back. */
        sigprocmask(SIG_SETMASK, &child_mask, NULL);

        /* Listeners, the signalfd and anything else of the parent's: only stdin, stdout,
         * stderr (the log) and the connection stay. */
        if (c->conn_fd > 3)
                close_range(3, (unsigned)c->conn_fd - 1, 0);
        close_range((unsigned)c->conn_fd + 1, ~0u, 0);

        _exit((int)client_serve(c));
}
