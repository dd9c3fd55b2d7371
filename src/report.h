/* The main process's side of the children's reports (struct client_report, client.h):
 * under journald each child sends one just before it exits, and the parent turns it into
 * the connection's journal record, with the child's pid still in the parent's unit. */
#pragma once

#include <stdint.h>

struct report;

/* A socketpair for the reports, when the log is the journal; *ret stays NULL (and no
 * socket is made) otherwise. Returns 0 or -errno. */
int report_new(struct report **ret);
/* The same with a socketpair handed over by the image before a reload (fds[0] < 0: none),
 * which its children still send on; closed if this image has no use for it. */
int report_adopt(const int32_t fds[2], struct report **ret);
void report_free(struct report *r);
/* The end a child sends on (client.report_fd); -1 without a report. */
int report_child_fd(const struct report *r);
/* Both ends, for a reload to hand over; -1 without a report. */
void report_fds(const struct report *r, int32_t ret_fds[2]);
/* Reads every queued report and logs each connection's record (or, if that cannot be
 * sent, its line). Called before reaping: a child's report is queued before it exits. */
void report_read_all(struct report *r);
