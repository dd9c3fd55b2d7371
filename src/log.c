/* stderr logging for the main process and its children. Each line is formatted into one
 * buffer and written with a single write(2), so lines from concurrent children never
 * interleave in the journal or a terminal. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_LINE_MAX 1024

static int max_level = LOG_INFO;
static bool use_prefix = false;

static const char *const level_names[] = {
        [LOG_ERR] = "err",   [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

static bool stderr_is_journal(void) {
        /* JOURNAL_STREAM is inherited by everything a journal-connected shell starts: only
         * trust it when it names the very stream that stderr is. */
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == (dev_t)dev && st.st_ino == (ino_t)ino;
}

void log_setup(int level) {
        max_level = level;
        use_prefix = stderr_is_journal();
}

int log_get_level(void) {
        return max_level;
}

int log_level_from_string(const char *s) {
        for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
                if (level_names[i] && strcmp(level_names[i], s) == 0)
                        return (int)i;
        return -EINVAL;
}

static void log_write(int level, const char *format, va_list ap) {
        char line[LOG_LINE_MAX];
        size_t n = 0;
        int r;

        if (use_prefix)
                n = (size_t)snprintf(line, sizeof(line), "<%d>", level);
        r = vsnprintf(line + n, sizeof(line) - n - 1, format, ap);
        if (r < 0)
                return;
        n += (size_t)r < sizeof(line) - n - 1 ? (size_t)r : sizeof(line) - n - 2;
        line[n++] = '\n';

        /* One write; a short write to a pipe or the journal stream is not retried, so a
         * line is never split into two. */
        while (write(STDERR_FILENO, line, n) < 0 && errno == EINTR)
                ;
}

void log_msg(int level, const char *format, ...) {
        va_list ap;
        int saved_errno = errno;

        if (level > max_level)
                return;
        va_start(ap, format);
        log_write(level, format, ap);
        va_end(ap);
        errno = saved_errno;
}

int log_errno(int level, int error, const char *format, ...) {
        va_list ap;

        error = abs(error);
        if (level <= max_level) {
                errno = error;
                va_start(ap, format);
                log_write(level, format, ap);
                va_end(ap);
        }
        errno = error;
        return -error;
}

char *log_sanitize(char *dst, size_t size, const char *src, size_t src_len) {
        size_t i;

        for (i = 0; i < src_len && i + 1 < size && src[i]; i++)
                dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
        dst[i] = '\0';
        return dst;
}

void log_line_str(struct log_line *l, const char *s) {
        while (*s && l->n < sizeof(l->text))
                l->text[l->n++] = *s++;
}

void log_line_u64(struct log_line *l, uint64_t v) {
        char digits[20];
        size_t i = 0;

        do
                digits[i++] = (char)('0' + v % 10);
        while ((v /= 10) > 0);
        while (i > 0 && l->n < sizeof(l->text))
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
        char line[LOG_LINE_MAX];
        size_t n = 0;

        if (level > max_level)
                return;
        if (use_prefix) {
                line[n++] = '<';
                line[n++] = (char)('0' + level);
                line[n++] = '>';
        }
        for (size_t i = 0; i < l->n && n < sizeof(line) - 1; i++)
                line[n++] = l->text[i];
        line[n++] = '\n';
        while (write(STDERR_FILENO, line, n) < 0 && errno == EINTR)
                ;
}
