/*
 * sandkube-console-receiver: the receiving end of --console-socket, for tests. It plays the part of
 * containerd's shim: accept one connection, take the pty master from SCM_RIGHTS (and insist on
 * exactly one fd), then copy the terminal's output to stdout until the container side closes.
 *
 * usage: sandkube-console-receiver SOCKET_PATH [INPUT]
 * stderr gets one line: "received NAME fds=N" (N must be 1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s SOCKET_PATH [INPUT]\n", argv[0]);
    return 2;
  }
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", argv[1]);
  unlink(argv[1]);
  if (bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(s, 1) < 0) {
    perror("listen");
    return 1;
  }
  int c = accept(s, NULL, NULL);
  if (c < 0) {
    perror("accept");
    return 1;
  }
  char name[512] = {0};
  union {
    char buf[CMSG_SPACE(sizeof(int) * 8)];
    struct cmsghdr align;
  } u;
  struct iovec iov = {.iov_base = name, .iov_len = sizeof name - 1};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  if (recvmsg(c, &msg, 0) < 0) {
    perror("recvmsg");
    return 1;
  }
  int nfds = 0, master = -1;
  for (struct cmsghdr *h = CMSG_FIRSTHDR(&msg); h; h = CMSG_NXTHDR(&msg, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
    int n = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < n; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
      if (master < 0) master = fd;
      nfds++;
    }
  }
  fprintf(stderr, "received %s fds=%d\n", name, nfds);
  if (master < 0) return 1;
  if (argc > 2) {
    size_t len = strlen(argv[2]);
    if (write(master, argv[2], len) != (ssize_t)len) perror("write input");
  }
  char buf[4096];
  for (;;) {
    ssize_t r = read(master, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break; /* EIO once every slave fd is closed */
    if (write(1, buf, (size_t)r) < 0) break;
  }
  return 0;
}
