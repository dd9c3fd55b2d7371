/* Runs a program where close_range() fails with ENOSYS, as on a kernel before 5.9 or
 * under a seccomp filter that refuses it: usage no-close-range PROGRAM [ARG]... A plain
 * seccomp-BPF filter (no libseccomp), kept across execve() by PR_SET_NO_NEW_PRIVS. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#endif

int main(int argc, char *argv[]) {
#ifdef ARCH
        struct sock_filter filter[] = {
                /* another architecture's system call numbers: let it through */
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 0, 3),
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close_range, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };

        if (argc < 2) {
                fprintf(stderr, "usage: no-close-range PROGRAM [ARG]...\n");
                return 64;
        }
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
                perror("no-close-range: seccomp");
                return 77;
        }
        execv(argv[1], argv + 1);
        perror("no-close-range: execv");
        return 127;
#else
        (void)argc;
        (void)argv;
        fprintf(stderr, "no-close-range: unknown architecture\n");
        return 77;
#endif
}
