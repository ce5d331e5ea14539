/*
 * sandkube's pause: the process that holds a pod sandbox's namespaces open.
 *
 * It runs as PID 1 of the pod's PID namespace when the pod shares one, so it must reap orphans
 * (the kernel re-parents them to PID 1 and nobody else will wait for them), and PID 1 gets no
 * default signal actions, so SIGTERM and SIGINT need handlers or they would be ignored and every
 * pod stop would wait for SIGKILL. Static, so the image needs no libc.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAUSE_VERSION "sandkube-pause 1"

static void exit_cleanly(int signo) {
  (void)signo;
  _exit(0);
}

static void reap_children(int signo) {
  (void)signo;
  int saved_errno = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved_errno;
}

static int install(int signo, void (*handler)(int), int flags) {
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = handler;
  action.sa_flags = flags;
  sigemptyset(&action.sa_mask);
  return sigaction(signo, &action, NULL);
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "-v") == 0) {
    puts(PAUSE_VERSION);
    return 0;
  }
  if (argc != 1) {
    fprintf(stderr, "usage: pause [-v]\n");
    return 2;
  }
  if (getpid() != 1)
    fprintf(stderr, "pause: warning: not PID 1, so orphans of this pod are reaped elsewhere\n");
  if (install(SIGINT, exit_cleanly, 0) != 0 || install(SIGTERM, exit_cleanly, 0) != 0 ||
      install(SIGCHLD, reap_children, SA_NOCLDSTOP | SA_RESTART) != 0) {
    perror("pause: sigaction");
    return 1;
  }
  for (;;)
    pause();
}
