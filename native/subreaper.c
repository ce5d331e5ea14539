/*
 * sandkube-subreaper: runs a command as a child subreaper and reaps every orphan until none is
 * left, for tests that drive sandkube-runtime without containerd. It plays the part of
 * containerd-shim-runc-v2, which is a subreaper: processes a runtime forks and leaves (the init, an
 * exec'd process) are reparented to it and reaped. Exits with the command's own status.
 *
 * usage: sandkube-subreaper CMD [ARG...]
 * stderr gets "reaped PID status N" for every other process it reaps.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s CMD [ARG...]\n", argv[0]);
    return 2;
  }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
    perror("PR_SET_CHILD_SUBREAPER");
    return 1;
  }
  pid_t cmd = fork();
  if (cmd < 0) {
    perror("fork");
    return 1;
  }
  if (cmd == 0) {
    execvp(argv[1], argv + 1);
    perror(argv[1]);
    _exit(127);
  }
  int result = 1;
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    if (pid == cmd) result = code;
    else fprintf(stderr, "reaped %d status %d\n", (int)pid, code);
  }
  return result;
}
