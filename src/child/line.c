/* The log line of a client's process, built and written without libc (see sys.h): the
 * child's one line per connection. The level and the journal prefix are decided by
 * log_setup() in the main process and inherited. */
#include "line.h"

#include <sys/stat.h>

#include "sys.h"

int log_max_level = LOG_INFO;
bool log_use_prefix = false;
unsigned log_stderr_type = 0;

void log_line_start(struct log_line *l) {
        l->n = LOG_LINE_PREFIX;
}

/* Appends stop one byte short of the end: the newline's place. */
void log_line_str(struct log_line *l, const char *s) {
        while (*s && l->n < sizeof(l->text) - 1)
                l->text[l->n++] = *s++;
}

void log_line_u64(struct log_line *l, uint64_t v) {
        char digits[20];
        size_t i = 0;

        do
                digits[i++] = (char)('0' + v % 10);
        while ((v /= 10) > 0);
        while (i > 0 && l->n < sizeof(l->text) - 1)
                l->text[l->n++] = digits[--i];
}

void log_line_seconds(struct log_line *l, uint64_t usec) {
        uint64_t ms = usec % 1000000u / 1000u;

        log_line_u64(l, usec / 1000000u);
        log_line_str(l, ".");
        log_line_str(l, ms < 10 ? "00" : ms < 100 ? "0" : "");
        log_line_u64(l, ms);
}

void log_line_emit(int level, struct log_line *l) {
        char *start = l->text + LOG_LINE_PREFIX;

        if (level > log_max_level)
                return;
        if (log_use_prefix) {
                start = l->text;
                start[0] = '<';
                start[1] = (char)('0' + level);
                start[2] = '>';
        }
        l->text[l->n++] = '\n';
        (void)log_write_line(start, (size_t)(l->text + l->n - start), LOG_CHILD_WAIT_MS);
}

/* Waits until stderr takes more, up to timeout_ms. */
static bool stderr_writable(int timeout_ms) {
        struct pollfd pfd = { .fd = STDERR_FILENO, .events = POLLOUT };
        struct timespec ts = { .tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000 };

        return sys_poll(&pfd, 1, &ts) > 0 && !(pfd.revents & (POLLERR | POLLNVAL));
}

bool log_write_line(const char *line, size_t n, int timeout_ms) {
        ssize_t r;

        if (log_stderr_type == S_IFSOCK) {
                /* The journal's stream: without waiting it takes a short line whole or not
                 * at all, so a line is never split. */
                r = sys_send(STDERR_FILENO, line, n, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (r == -EAGAIN && stderr_writable(timeout_ms))
                        r = sys_send(STDERR_FILENO, line, n, MSG_DONTWAIT | MSG_NOSIGNAL);
                return r >= 0;
        }
        /* A pipe or a terminal: one write once it polls writable (a pipe with room takes up
         * to PIPE_BUF at once); a regular file is always writable. A short write is not
         * retried. */
        if (log_stderr_type != S_IFREG && !stderr_writable(timeout_ms))
                return false;
        while ((r = sys_write(STDERR_FILENO, line, n)) == -EINTR)
                ;
        return r >= 0;
}
