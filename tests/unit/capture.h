/* What a unit test's code under test logs: stderr goes to a temporary file between
 * capture_begin() and capture_end(), which returns the text. Not nested. */
#pragma once

#include <stdio.h>
#include <unistd.h>

static FILE *capture_file;
static int capture_saved_fd = -1;

static inline void capture_begin(void) {
        fflush(stderr);
        capture_file = tmpfile();
        capture_saved_fd = dup(STDERR_FILENO);
        if (capture_file)
                dup2(fileno(capture_file), STDERR_FILENO);
}

/* The text logged since capture_begin(), into buf (truncated to size). Returns buf. */
static inline const char *capture_end(char *buf, size_t size) {
        size_t len = 0;

        dup2(capture_saved_fd, STDERR_FILENO);
        close(capture_saved_fd);
        if (capture_file) {
                rewind(capture_file);
                len = fread(buf, 1, size - 1, capture_file);
                fclose(capture_file);
        }
        buf[len] = '\0';
        return buf;
}
