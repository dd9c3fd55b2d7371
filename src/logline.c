/* The log line of a client's process, built and written without libc (see sys.h): the
 * child's one line per connection. The level and the journal prefix are decided by
 * log_setup() in the main process and inherited. */
#include "log.h"

#include "sys.h"

int log_max_level = LOG_INFO;
bool log_use_prefix = false;

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
        /* One write; a short write to a pipe or the journal stream is not retried, so a
         * line is never split into two. */
        while (sys_write(STDERR_FILENO, start, (size_t)(l->text + l->n - start)) == -EINTR)
                ;
}
