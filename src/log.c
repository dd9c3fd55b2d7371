/* Logging for the main process (its children use child/line.c): a line on stderr, formatted
 * into one buffer and written with a single write(2), so lines from concurrent processes
 * never interleave; or, when stderr is the journal, one native journal record per event. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child/line.h"

#define LOG_LINE_MAX 1024

static uint64_t n_dropped; /* lines stderr did not take since the last one it did */
/* The journal's native socket, when stderr is the journal (else -1), and how many records
 * it did not take. */
static int journal_fd = -1;
static unsigned long n_journal_dropped;

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
        struct stat st;

        log_max_level = level;
        log_stderr_type = fstat(STDERR_FILENO, &st) == 0 ? (unsigned)(st.st_mode & S_IFMT) : 0;
        log_use_prefix = stderr_is_journal();
        if (log_use_prefix && journal_fd < 0)
                journal_fd = journal_open(); /* -errno: every event falls back to its line */
}

bool log_journal(void) {
        return journal_fd >= 0;
}

unsigned long log_journal_dropped(void) {
        return n_journal_dropped;
}

static int log_journal_send(int level, const char *message_id, struct journal_record *record) {
        char priority[2] = { (char)('0' + level), '\0' };
        int r;

        (void)journal_record_add(record, "PRIORITY", priority, 1);
        (void)journal_record_add(record, "SYSLOG_IDENTIFIER", "echod", 5);
        if (message_id)
                (void)journal_record_add(record, "MESSAGE_ID", message_id, strlen(message_id));
        (void)journal_record_add(record, "DOCUMENTATION", "man:echod(8)", 12);
        r = journal_send(journal_fd, record);
        if (r < 0)
                n_journal_dropped++;
        return r;
}

int log_get_level(void) {
        return log_max_level;
}

int log_level_from_string(const char *s) {
        for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
                if (level_names[i] && strcmp(level_names[i], s) == 0)
                        return (int)i;
        return -EINVAL;
}

/* The event as one record; false if it was not sent (then its line is written). */
static bool log_write_record(int level, const char *message_id, struct journal_record *record,
                             const char *text, size_t len) {
        struct journal_record own;

        if (journal_fd < 0)
                return false;
        if (!record) {
                journal_record_start(&own);
                record = &own;
        }
        if (journal_record_add(record, "MESSAGE", text, len) < 0) {
                n_journal_dropped++;
                return false;
        }
        return log_journal_send(level, message_id, record) == 0;
}

__attribute__((format(printf, 4, 0))) static void
log_write(int level, const char *message_id, struct journal_record *record, const char *format, va_list ap) {
        char line[LOG_LINE_MAX];
        size_t n = 0, prefix;
        int r;

        if (log_use_prefix)
                n = (size_t)snprintf(line, sizeof(line), "<%d>", level);
        prefix = n;
        r = vsnprintf(line + n, sizeof(line) - n - 1, format, ap);
        if (r < 0)
                return;
        n += (size_t)r < sizeof(line) - n - 1 ? (size_t)r : sizeof(line) - n - 2;
        if (log_write_record(level, message_id, record, line + prefix, n - prefix))
                return;
        line[n++] = '\n';

        /* The loop waits while a line does: a stalled reader costs it LOG_MAIN_WAIT_MS a
         * line at most, and what is dropped is counted and said once stderr takes lines
         * again. */
        if (n_dropped > 0) {
                char note[96];
                int k = snprintf(note, sizeof(note),
                                 "%s%llu log lines were dropped: stderr was not writable\n",
                                 log_use_prefix ? "<4>" : "", (unsigned long long)n_dropped);
                if (k <= 0 || (size_t)k >= sizeof(note) || !log_write_line(note, (size_t)k, 0)) {
                        n_dropped++;
                        return;
                }
                n_dropped = 0;
        }
        if (!log_write_line(line, n, LOG_MAIN_WAIT_MS))
                n_dropped++;
}

void log_msg(int level, const char *format, ...) {
        va_list ap;
        int saved_errno = errno;

        if (level > log_max_level)
                return;
        va_start(ap, format);
        log_write(level, NULL, NULL, format, ap);
        va_end(ap);
        errno = saved_errno;
}

void log_event(int level, const char *message_id, struct journal_record *record, const char *format, ...) {
        va_list ap;
        int saved_errno = errno;

        if (level > log_max_level)
                return;
        va_start(ap, format);
        log_write(level, message_id, record, format, ap);
        va_end(ap);
        errno = saved_errno;
}

int log_errno(int level, int error, const char *format, ...) {
        va_list ap;

        error = abs(error);
        if (level <= log_max_level) {
                struct journal_record record;
                journal_record_start(&record);
                if (journal_fd >= 0)
                        (void)journal_record_addf(&record, "ERRNO", "%d", error);
                errno = error;
                va_start(ap, format);
                log_write(level, NULL, &record, format, ap);
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
