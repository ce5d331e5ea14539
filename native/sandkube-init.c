/*
 * sandkube-init: the single-threaded half of sandkube-runtime.
 *
 * Bun runs several threads, and unshare(CLONE_NEWNS), setns(CLONE_NEWNS), setuid and capset act on
 * one thread (or refuse a multithreaded caller), so the container init's system calls live here.
 * The TypeScript side decides everything; this program only executes a flat list of instructions
 * (src/runtime/instructions.ts): NUL-terminated strings, each instruction an op name followed by a
 * fixed number of arguments.
 *
 * usage: sandkube-init INSTRUCTION_FILE REPORT_FD
 * Report lines on REPORT_FD: "pid N", "warn MSG", "error MSG", "ready".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <seccomp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
/* glibc gained a mount_setattr wrapper only in 2.36, and <linux/mount.h> clashes with <sys/mount.h>
 * there, so the syscall is called directly (x86_64: 442, Linux 5.12+). */
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#define SANDKUBE_MOUNT_ATTR_RDONLY 0x00000001ULL
#define SANDKUBE_MOUNT_ATTR_IDMAP 0x00100000ULL
/* open_tree and move_mount (Linux 5.2+) have no glibc wrapper before 2.36 either (x86_64 numbers). */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#define SANDKUBE_OPEN_TREE_CLONE 1
#define SANDKUBE_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
struct sandkube_mount_attr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#endif

static int report_fd = -1;
/* Set when the container's root is only a chroot (no mount namespace, no pivot_root, no MS_MOVE:
 * gVisor before Aug 2023). A process holding CAP_SYS_CHROOT can leave a chroot (chroot into a
 * subdirectory, then walk up), so the capability is withheld from every process of the container. */
static int root_is_chroot;
/* The connection a handover came in on; see "kernels without setns(2)" below. */
static int handover_conn = -1;
static void send_own_pid(int sock);
#define CAP_SYS_CHROOT_BIT 18
static int console_fd = -1;
static int listen_fd = -1;
static char resolved_exec[4096];
static scmp_filter_ctx seccomp_filter;
/* Detached mounts made by mount_prepare, attached by mount_attach (the slot is the plan's index). */
#define MAX_PREPARED_MOUNTS 1024
static int prepared_mounts[MAX_PREPARED_MOUNTS];
static unsigned long prepared_propagation[MAX_PREPARED_MOUNTS];

static void report(const char *kind, const char *msg) {
  if (report_fd < 0) {
    dprintf(2, "sandkube-init: %s %s\n", kind, msg);
    return;
  }
  dprintf(report_fd, "%s %s\n", kind, msg);
}

static void warnf(const char *fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  report("warn", buf);
}

/* Keeps errno's text, so the log says both what was attempted and what the kernel answered. */
static void die(const char *fmt, ...) {
  char buf[2048];
  int saved = errno;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (saved != 0 && n > 0 && (size_t)n < sizeof buf)
    snprintf(buf + n, sizeof buf - n, ": %s", strerror(saved));
  report("error", buf);
  _exit(1);
}

/* ---- instruction stream ---- */
static char *stream;
static size_t stream_len, cursor;

static const char *next_str(void) {
  if (cursor >= stream_len) die("instruction list ends early (corrupt instruction file)");
  const char *s = stream + cursor;
  size_t n = strnlen(s, stream_len - cursor);
  if (cursor + n >= stream_len) die("instruction list is not NUL-terminated");
  cursor += n + 1;
  return s;
}

static long long next_num(void) {
  const char *s = next_str();
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || end == s) die("instruction argument '%s' is not a number", s);
  return v;
}

static unsigned long long next_unum(void) {
  const char *s = next_str();
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || end == s) die("instruction argument '%s' is not a number", s);
  return v;
}

/* argv-style array: count, then strings. */
static char **next_array(void) {
  long long n = next_num();
  if (n < 0 || n > 100000) die("bad array length %lld", n);
  char **arr = calloc((size_t)n + 1, sizeof(char *));
  if (!arr) die("out of memory");
  for (long long i = 0; i < n; i++) arr[i] = (char *)next_str();
  arr[n] = NULL;
  return arr;
}

static void read_stream(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open instruction file %s", path);
  struct stat st;
  if (fstat(fd, &st) < 0) die("stat instruction file");
  stream_len = (size_t)st.st_size;
  stream = malloc(stream_len + 1);
  if (!stream) die("out of memory");
  size_t got = 0;
  while (got < stream_len) {
    ssize_t r = read(fd, stream + got, stream_len - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("read instruction file");
    got += (size_t)r;
  }
  close(fd);
}

/* ---- helpers ---- */
/* gVisor's sysfs answers mkdir of an existing directory on a read-only mount with EROFS, not
 * EEXIST (seen: "mkdir .../rootfs/sys/fs: Read-only file system" for CRI's /sys/fs/cgroup under a
 * read-only /sys), so an existing directory is accepted whatever mkdir says. */
static void mkdir_one(const char *path, mode_t mode) {
  if (mkdir(path, mode) == 0 || errno == EEXIST) return;
  int err = errno;
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return;
  errno = err;
  die("mkdir %s", path);
}

static void mkdir_p(const char *path, mode_t mode) {
  char buf[4096];
  if (strlen(path) >= sizeof buf) die("path too long: %s", path);
  strcpy(buf, path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir_one(buf, mode);
    *p = '/';
  }
  mkdir_one(buf, mode);
}

static void touch(const char *path) {
  struct stat existing;
  /* Opening an existing mount point for writing fails on a read-only root (EROFS). */
  if (lstat(path, &existing) == 0) return;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = '\0';
    mkdir_p(dir, 0755);
  }
  int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0 && errno != EEXIST && errno != EISDIR) die("create mount point %s", path);
  if (fd >= 0) close(fd);
}

static void write_file(const char *path, const char *value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open %s", path);
  size_t len = strlen(value);
  if (write(fd, value, len) != (ssize_t)len) die("write '%s' to %s", value, path);
  close(fd);
}

/* A read-only remount must keep the flags already on the mount (nosuid, nodev, noexec...), or the
 * kernel refuses it for locked mounts and silently widens it otherwise. */
static unsigned long current_mount_flags(const char *path) {
  struct statvfs sv;
  if (statvfs(path, &sv) < 0) return 0;
  unsigned long f = 0;
  if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

static int bind_remount(const char *path, unsigned long flags) {
  unsigned long keep = current_mount_flags(path);
  if (mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | flags | keep, NULL) == 0) return 0;
  /* A mount copied into a mount namespace of a user namespace has its read-only flag locked too
   * (MNT_LOCK_READONLY), so a remount that would clear it is refused with EPERM. runc re-applies
   * the locked flags and retries (libcontainer/rootfs_linux.go, mntLockFlags); so does this. */
  struct statvfs sv;
  if (errno != EPERM || (flags & MS_RDONLY) || statvfs(path, &sv) < 0 || !(sv.f_flag & ST_RDONLY)) return -1;
  return mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | flags | keep | MS_RDONLY, NULL);
}

/* ---- read-only mounts without MS_REMOUNT ----
 * gVisor before Aug 2023 answers every MS_REMOUNT with EINVAL and ignores flags on MS_BIND
 * (pkg/sentry/syscalls/linux/sys_mount.go), so no bind can be made read-only there. A new mount's
 * flags are honoured, and an overlay with lower layers only is read-only by construction. Seen in
 * the lab on runsc old: an overlay "lowerdir=X:X" mounted over X refuses writes with EROFS and shows
 * later changes to X; a bind of a file out of such an overlay is read-only too (binds copy the
 * source mount's flags, vfs.cloneMount). Two lower layers because gVisor wants two without an upper. */
static const unsigned long VIEW_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC;

static int overlay_view(const char *dir, const char *target, unsigned long flags) {
  char data[8200];
  if (strpbrk(dir, ":,")) {
    errno = EINVAL;
    return -1;
  }
  snprintf(data, sizeof data, "lowerdir=%s:%s", dir, dir);
  return mount("overlay", target, "overlay", MS_RDONLY | (flags & VIEW_FLAGS), data);
}

/* Makes `target` (already bound from `source`) read-only where remount is refused. A file is bound
 * again from a read-only view of its source's directory, mounted at `scratch`, a directory outside
 * the container's root that disappears from this mount namespace with the old root. */
static void readonly_by_overlay(const char *source, const char *target, unsigned long flags, const char *scratch) {
  struct stat st;
  if (stat(target, &st) < 0) die("stat %s", target);
  if (S_ISDIR(st.st_mode)) {
    if (overlay_view(target, target, flags) < 0) die("mount a read-only overlay view over %s (this kernel cannot remount)", target);
    return;
  }
  if (!source || !*source || !scratch || !*scratch) {
    errno = EINVAL;
    die("make file %s read-only: this kernel cannot remount, and no source is known to bind from", target);
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", source);
  char *slash = strrchr(dir, '/');
  if (!slash) die("bind source %s is not an absolute path", source);
  const char *base = slash + 1;
  *slash = '\0';
  mkdir_p(scratch, 0700);
  if (overlay_view(*dir ? dir : "/", scratch, flags) < 0) die("mount a read-only overlay view of %s at %s", dir, scratch);
  char from[4200];
  snprintf(from, sizeof from, "%s/%s", scratch, base);
  if (mount(from, target, NULL, MS_BIND, NULL) < 0) die("bind %s read-only onto %s", from, target);
}

/* Remount with `flags`; where the kernel refuses remounts, read-only is kept through an overlay view
 * and the other flags are reported as not applied (a bind cannot carry them there). */
static void remount_or_view(const char *source, const char *target, unsigned long flags, const char *scratch) {
  if (bind_remount(target, flags) == 0) return;
  if (errno != EINVAL) die("remount %s with flags 0x%lx", target, flags);
  if (flags & MS_RDONLY) {
    readonly_by_overlay(source, target, flags, scratch);
    warnf("remount of %s refused (EINVAL: this kernel cannot remount); made read-only through an overlay view", target);
    return;
  }
  if (flags & VIEW_FLAGS)
    warnf("remount of %s with flags 0x%lx refused (EINVAL: this kernel cannot remount); nosuid/nodev/noexec not applied", target, flags & VIEW_FLAGS);
}

/* runc's rootfsParentMountPrivate: EINVAL means "not a mount point", so walk up to one. */
static void make_parent_mount_private(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  for (;;) {
    if (mount(NULL, dir, NULL, MS_PRIVATE, NULL) == 0) return;
    if (errno != EINVAL || !strcmp(dir, "/")) break;
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else *slash = '\0';
  }
  die("make the mount holding %s private", path);
}

/* Whether the root will need an overlay view to be read-only: checked with a remount that changes
 * nothing, right after the root is bound onto itself and before anything is mounted inside it. */
static int root_readonly_by_overlay;

static void readonly_root_early(const char *rootfs) {
  if (bind_remount(rootfs, 0) == 0) return;
  if (errno != EINVAL) die("remount %s", rootfs);
  if (overlay_view(rootfs, rootfs, 0) < 0) die("mount a read-only overlay view over the root %s (this kernel cannot remount)", rootfs);
  root_readonly_by_overlay = 1;
  warnf("remount refused (EINVAL: this kernel cannot remount); the root is a read-only overlay view of %s", rootfs);
}

static int last_cap(void) {
  /* PR_CAPBSET_READ answers EINVAL past the last capability; this works where
   * /proc/sys/kernel/cap_last_cap is absent (gVisor before Aug 2023). */
  int c = 0;
  while (c < 64 && prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0) c++;
  return c - 1;
}

static void mark_fds_cloexec(int first) {
  if (syscall(SYS_close_range, (unsigned)first, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      int fd = atoi(e->d_name);
      if (fd >= first && fd != dirfd(d)) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    closedir(d);
    return;
  }
  struct rlimit rl;
  int max = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536) max = (int)rl.rlim_cur;
  for (int fd = first; fd < max; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Unix-socket messages with one control message (SCM_RIGHTS fds or SCM_CREDENTIALS): the console,
 * the exec agent's root, a handover, and a handed-over process naming itself. */
#define CONTROL_MAX 1024
static void send_control(int sock, const void *data, size_t len, int type, const void *control, size_t control_len, const char *what) {
  union {
    char buf[CMSG_SPACE(CONTROL_MAX)];
    struct cmsghdr align;
  } u;
  if (control_len > CONTROL_MAX) die("too much to send with %s", what);
  memset(&u, 0, sizeof u);
  struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = CMSG_SPACE(control_len)};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = type;
  c->cmsg_len = CMSG_LEN(control_len);
  memcpy(CMSG_DATA(c), control, control_len);
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) die("send %s over a unix socket", what);
}

/* Receives into data and, when the message carries one of `type`, its payload into control.
 * Returns recvmsg's result; *control_len is 0 when no such control message came. */
static ssize_t recv_control(int sock, void *data, size_t len, int type, void *control, size_t *control_len) {
  union {
    char buf[CMSG_SPACE(CONTROL_MAX)];
    struct cmsghdr align;
  } u;
  struct iovec iov = {.iov_base = data, .iov_len = len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  ssize_t r;
  do r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  size_t max = *control_len;
  *control_len = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); r > 0 && c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != type) continue;
    size_t n = c->cmsg_len - CMSG_LEN(0);
    if (n > max) n = max;
    memcpy(control, CMSG_DATA(c), n);
    *control_len = n;
    break;
  }
  return r;
}

static void send_fd(int sock, int fd, const char *name) {
  send_control(sock, name, strlen(name), SCM_RIGHTS, &fd, sizeof fd, name);
}

static void make_pty(uid_t uid, gid_t gid) {
  if (console_fd < 0) die("terminal requested but no console socket is connected");
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) die("open /dev/ptmx in the container");
  if (unlockpt(master) < 0) die("unlockpt");
  char name[256];
  if (ptsname_r(master, name, sizeof name) != 0) die("ptsname");
  int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) die("open %s", name);
  if (fchown(slave, uid, gid) < 0 && errno != EPERM) warnf("chown %s: %s", name, strerror(errno));
  send_fd(console_fd, master, name);
  close(master);
  close(console_fd);
  console_fd = -1;
  if (setsid() < 0 && errno != EPERM) die("setsid");
  if (ioctl(slave, TIOCSCTTY, 0) < 0) die("make %s the controlling terminal", name);
  for (int i = 0; i < 3; i++)
    if (dup2(slave, i) < 0) die("dup2 pty to fd %d", i);
  if (slave > 2) close(slave);
}

static void resolve_exec(const char *name, const char *path_var) {
  if (strchr(name, '/')) {
    if (access(name, X_OK) < 0) die("exec: \"%s\": cannot run it in the container", name);
    snprintf(resolved_exec, sizeof resolved_exec, "%s", name);
    return;
  }
  char *paths = strdup(path_var);
  for (char *save = NULL, *dir = strtok_r(paths, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
    char cand[4096];
    struct stat st;
    snprintf(cand, sizeof cand, "%s/%s", *dir ? dir : ".", name);
    if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0) {
      snprintf(resolved_exec, sizeof resolved_exec, "%s", cand);
      free(paths);
      return;
    }
  }
  free(paths);
  errno = 0;
  die("exec: \"%s\": executable file not found in $PATH", name);
}

static void do_move_root(const char *rootfs) {
  if (chdir(rootfs) < 0) die("chdir rootfs %s", rootfs);
  if (mount(rootfs, "/", NULL, MS_MOVE, NULL) < 0) {
    if (errno != EINVAL) die("move rootfs to /");
    /* gVisor before 2023 has no MS_MOVE either: a plain chroot is what is left. */
    warnf("MS_MOVE refused (EINVAL); the container root is a plain chroot, so CAP_SYS_CHROOT is withheld");
    root_is_chroot = 1;
  }
  if (chroot(".") < 0) die("chroot");
  if (chdir("/") < 0) die("chdir /");
}

static void do_pivot_root(const char *rootfs) {
  int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (oldroot < 0) die("open /");
  int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (newroot < 0) die("open rootfs %s", rootfs);
  if (fchdir(newroot) < 0) die("chdir rootfs");
  /* pivot_root(".", ".") stacks the old root on the new one, so no put_old directory is needed
   * inside a possibly read-only rootfs (runc's libcontainer/rootfs_linux.go does the same). */
  if (syscall(SYS_pivot_root, ".", ".") < 0) {
    if (errno != EINVAL) die("pivot_root %s", rootfs);
    /* gVisor before 2023 has no pivot_root (EINVAL). MS_MOVE + chroot is runc's --no-pivot; it can
     * be escaped by a process that keeps CAP_SYS_CHROOT, which the log says. */
    warnf("pivot_root refused (EINVAL); the root is moved and chrooted instead (like --no-pivot)");
    close(oldroot);
    close(newroot);
    do_move_root(rootfs);
    return;
  }
  if (fchdir(oldroot) < 0) die("chdir old root");
  /* gVisor before 2023 rejects MS_SLAVE (EINVAL); the old root is detached right after anyway. */
  if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0 && mount(NULL, ".", NULL, MS_PRIVATE | MS_REC, NULL) < 0 && errno != EINVAL)
    die("make old root slave");
  if (umount2(".", MNT_DETACH) < 0) die("detach old root");
  if (chdir("/") < 0) die("chdir /");
  close(oldroot);
  close(newroot);
}

static void mask_path(const char *path) {
  struct stat st;
  if (stat(path, &st) < 0) {
    if (errno == ENOENT) return;
    die("stat masked path %s", path);
  }
  if (S_ISDIR(st.st_mode)) {
    if (mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0k,mode=000") < 0) die("mask %s", path);
  } else if (mount("/dev/null", path, NULL, MS_BIND, NULL) < 0) {
    die("mask %s", path);
  }
}

static void readonly_path(const char *path) {
  int rc = mount(path, path, NULL, MS_BIND | MS_REC, NULL);
  /* gVisor before 2023: no recursive binds (EINVAL). */
  if (rc < 0 && errno == EINVAL) rc = mount(path, path, NULL, MS_BIND, NULL);
  if (rc < 0) {
    if (errno == ENOENT) return;
    die("bind readonly path %s", path);
  }
  if (bind_remount(path, MS_RDONLY) == 0) return;
  if (errno != EINVAL)
    die("remount %s read-only (refused, so the container is not created rather than left writable)", path);
  readonly_by_overlay(NULL, path, 0, NULL);
}

static void recursive_readonly(const char *path) {
  struct sandkube_mount_attr attr = {.attr_set = SANDKUBE_MOUNT_ATTR_RDONLY};
  if (syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr) == 0) return;
  if (errno == ENOSYS)
    die("mount option rro on %s needs mount_setattr (Linux 5.12+), which this kernel lacks; use \"ro\" "
        "if writable submounts are acceptable",
        path);
  die("make %s recursively read-only (mount_setattr)", path);
}

/* ---- user namespaces and idmapped mounts ---- */
static void become_namespace_root(void) {
  /* Until now this process is an unmapped (overflow) id in the namespace; it holds every capability
   * there, so it may become its root, which later steps (mounts in a rootfs owned by the mapped
   * root, setgroups) need. runc does the same after joining or unsharing (nsexec.c). */
  if (setresgid(0, 0, 0) < 0) die("become gid 0 in the user namespace (is container gid 0 mapped?)");
  if (setresuid(0, 0, 0) < 0) die("become uid 0 in the user namespace (is container uid 0 mapped?)");
}

/* Only a writer holding CAP_SETUID/CAP_SETGID in the parent user namespace may map arbitrary host
 * ranges (user_namespaces(7)), so the maps are always written from outside the namespace. */
static void write_id_maps(pid_t pid, const char *uid_map, const char *gid_map) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, uid_map, strlen(uid_map)) != (ssize_t)strlen(uid_map)) die("write %s", path);
  close(fd);
  snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
  fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, gid_map, strlen(gid_map)) != (ssize_t)strlen(gid_map)) die("write %s", path);
  close(fd);
}

static void reap(pid_t pid, const char *what) {
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) die("wait for the %s", what);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  /* A child that exited 1 has reported its error on the report fd already. */
  if (WIFEXITED(status)) _exit(1);
  errno = 0;
  die("the %s was killed by signal %d", what, WTERMSIG(status));
}

/* unshare(CLONE_NEWUSER) with maps from the spec. A mapper child stays in the initial user
 * namespace to write them (see write_id_maps); then this process becomes root in the new namespace
 * before anything else is unshared, so those namespaces are owned by it (proc, sysfs and mqueue can
 * only be mounted by the owner of the pid, network and ipc namespace). */
static void new_user_namespace(const char *uid_map, const char *gid_map) {
  int sync[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync) < 0) die("socketpair for the uid mapper");
  pid_t helper = getpid();
  pid_t mapper = fork();
  if (mapper < 0) die("fork the uid mapper");
  if (mapper == 0) {
    close(sync[0]);
    char byte;
    if (read(sync[1], &byte, 1) != 1) _exit(1); /* the helper failed and reported it */
    write_id_maps(helper, uid_map, gid_map);
    if (write(sync[1], "m", 1) != 1) _exit(1);
    _exit(0);
  }
  close(sync[1]);
  if (unshare(CLONE_NEWUSER) < 0) die("unshare a new user namespace");
  char byte = 'u';
  if (write(sync[0], &byte, 1) != 1) die("ask the uid mapper to write the maps");
  ssize_t r = read(sync[0], &byte, 1);
  close(sync[0]);
  reap(mapper, "uid mapper");
  if (r != 1) {
    errno = 0;
    die("the uid mapper exited without writing the maps");
  }
  become_namespace_root();
}

/* MOUNT_ATTR_IDMAP takes its mapping from a user namespace fd, so a child unshares a namespace that
 * holds just these maps; the fd keeps the namespace alive after the child is gone. */
static int userns_with_maps(const char *uid_map, const char *gid_map) {
  static char *cached_uid, *cached_gid;
  static int cached_fd = -1;
  if (cached_fd >= 0 && !strcmp(cached_uid, uid_map) && !strcmp(cached_gid, gid_map)) return cached_fd;
  int ready[2], hold[2];
  if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(hold, O_CLOEXEC) < 0) die("pipe");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    close(ready[0]);
    close(hold[1]);
    if (unshare(CLONE_NEWUSER) < 0) die("unshare a user namespace for an idmapped mount");
    char byte = 'u';
    if (write(ready[1], &byte, 1) != 1) _exit(1);
    (void)read(hold[0], &byte, 1); /* EOF once the parent holds the namespace fd */
    _exit(0);
  }
  close(ready[1]);
  close(hold[0]);
  char byte;
  ssize_t r = read(ready[0], &byte, 1);
  close(ready[0]);
  if (r != 1) {
    close(hold[1]);
    reap(child, "idmap namespace child");
    errno = 0;
    die("the idmap namespace child exited early");
  }
  write_id_maps(child, uid_map, gid_map);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/user", (int)child);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open %s", path);
  close(hold[1]);
  reap(child, "idmap namespace child");
  if (cached_fd >= 0) close(cached_fd);
  free(cached_uid);
  free(cached_gid);
  cached_uid = strdup(uid_map);
  cached_gid = strdup(gid_map);
  cached_fd = fd;
  return fd;
}

/* A detached copy of `source`, made while this process is still root in the initial user and mount
 * namespace: after unsharing a user namespace it could neither look up host paths as the mapped
 * root nor set MOUNT_ATTR_IDMAP, which needs CAP_SYS_ADMIN in the namespace owning the source's
 * filesystem. The fd is inherited by the init, which attaches it with mount_attach. */
static void prepare_mount(long slot, const char *source, int recursive, unsigned long propagation, int idmap_recursive,
                          const char *uid_map, const char *gid_map, const char *userns_path) {
  if (slot < 0 || slot >= MAX_PREPARED_MOUNTS) die("mount slot %ld out of range", slot);
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, source,
                          SANDKUBE_OPEN_TREE_CLONE | O_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
  if (tree < 0) {
    if (errno == ENOSYS) die("bind of %s needs open_tree (Linux 5.2+), which this kernel lacks", source);
    die("clone mount of %s (open_tree)", source);
  }
  prepared_propagation[slot] = propagation;
  if (*uid_map || *userns_path) {
    int ns = *userns_path ? open(userns_path, O_RDONLY | O_CLOEXEC) : userns_with_maps(uid_map, gid_map);
    if (ns < 0) die("open user namespace %s", userns_path);
    struct sandkube_mount_attr attr = {.attr_set = SANDKUBE_MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)ns};
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (idmap_recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) < 0) {
      if (errno == ENOSYS) die("idmapped mount of %s needs mount_setattr (Linux 5.12+), which this kernel lacks", source);
      if (errno == EINVAL)
        die("idmapped mount of %s refused by the kernel (its filesystem may not support idmapped mounts)", source);
      die("idmap mount of %s (mount_setattr)", source);
    }
    if (*userns_path) close(ns);
  }
  prepared_mounts[slot] = tree + 1; /* 0 marks an empty slot */
}

/* A clone of a shared host mount is that mount's peer: mounts made under it in the container would
 * show up on the host. A bind made inside the container inherits the container root's propagation
 * (slave by default), so the attached clone is given it before anything is mounted under it. With
 * mount(2) rather than mount_setattr, which gVisor lacks. */
static void set_clone_propagation(long slot, const char *target) {
  unsigned long propagation = prepared_propagation[slot];
  if (propagation != 0 && mount(NULL, target, NULL, propagation | MS_REC, NULL) < 0)
    die("set propagation 0x%lx on the attached clone at %s", propagation, target);
}

static void attach_mount(long slot, const char *target) {
  if (slot < 0 || slot >= MAX_PREPARED_MOUNTS || prepared_mounts[slot] == 0) die("mount slot %ld was never prepared", slot);
  int tree = prepared_mounts[slot] - 1;
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target, SANDKUBE_MOVE_MOUNT_F_EMPTY_PATH) < 0)
    die("attach mount on %s (move_mount)", target);
  close(tree);
  prepared_mounts[slot] = 0;
  set_clone_propagation(slot, target);
}

/* The rootfs clone goes on the current directory, which the helper set to the rootfs while it could
 * still reach it; the init then works relative to it, since the rootfs's parents may be closed to
 * the mapped root (a 0700 state directory). fchdir to the clone enters the new mount itself. */
static void attach_root(long slot) {
  if (slot < 0 || slot >= MAX_PREPARED_MOUNTS || prepared_mounts[slot] == 0) die("mount slot %ld was never prepared", slot);
  int tree = prepared_mounts[slot] - 1;
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, ".", SANDKUBE_MOVE_MOUNT_F_EMPTY_PATH) < 0)
    die("attach the rootfs (move_mount)");
  if (fchdir(tree) < 0) die("enter the attached rootfs");
  close(tree);
  prepared_mounts[slot] = 0;
  set_clone_propagation(slot, ".");
}

/* pairs: CLONE_FLAG, PATH, ... All paths are opened first: after joining the user or mount
 * namespace they may no longer resolve or be permitted. As runc's nsexec join_namespaces: first
 * whatever the host's root may join (a pod's network namespace belongs to the initial user
 * namespace), then the user namespace, then what only its root may join. */
static void join_namespaces(char **pairs) {
  size_t n = 0;
  while (pairs[n]) n++;
  if (n % 2 != 0 || n / 2 > 16) die("join_namespaces: bad list of %zu items", n);
  size_t count = n / 2;
  int fds[16], types[16];
  for (size_t i = 0; i < count; i++) {
    types[i] = atoi(pairs[2 * i]);
    fds[i] = open(pairs[2 * i + 1], O_RDONLY | O_CLOEXEC);
    if (fds[i] < 0) die("open namespace %s", pairs[2 * i + 1]);
  }
  for (int pass = 0; pass < 3; pass++) {
    for (size_t i = 0; i < count; i++) {
      int is_user = types[i] == CLONE_NEWUSER;
      if (fds[i] < 0 || (pass == 1) != is_user) continue;
      if (setns(fds[i], types[i]) < 0) {
        if (pass == 0 && errno == EPERM) continue;
        die("join namespace %s", pairs[2 * i + 1]);
      }
      close(fds[i]);
      fds[i] = -1;
      if (is_user) become_namespace_root();
    }
  }
}

static void seccomp_start(uint32_t default_action, char **arches, char **flags) {
  if (seccomp_filter) seccomp_release(seccomp_filter);
  seccomp_filter = seccomp_init(default_action);
  if (!seccomp_filter) {
    errno = 0;
    die("seccomp: libseccomp refused default action 0x%x", default_action);
  }
  /* no_new_privs is the spec's noNewPrivileges to decide (as runc: SetNoNewPrivsBit(false)), and
   * raw return codes let a kernel without seccomp be told apart from a bad filter. */
  if (seccomp_attr_set(seccomp_filter, SCMP_FLTATR_CTL_NNP, 0) < 0) die("seccomp: clear NNP attribute");
  (void)seccomp_attr_set(seccomp_filter, SCMP_FLTATR_API_SYSRAWRC, 1);
  for (char **a = arches; *a; a++) {
    uint32_t arch = seccomp_arch_resolve_name(*a);
    if (arch == 0) {
      warnf("seccomp: architecture %s unknown to this libseccomp; not added", *a);
      continue;
    }
    int rc = seccomp_arch_add(seccomp_filter, arch);
    if (rc < 0 && rc != -EEXIST) {
      errno = -rc;
      die("seccomp: add architecture %s", *a);
    }
  }
  for (char **f = flags; *f; f++) {
    enum scmp_filter_attr attr = !strcmp(*f, "log") ? SCMP_FLTATR_CTL_LOG : SCMP_FLTATR_CTL_SSB;
    int rc = seccomp_attr_set(seccomp_filter, attr, 1);
    if (rc < 0) warnf("seccomp: filter flag %s not supported here (%s); ignored", *f, strerror(-rc));
  }
}

static void seccomp_rule(const char *name, uint32_t action, char **conditions) {
  if (!seccomp_filter) die("seccomp_rule before seccomp_init");
  int nr = seccomp_syscall_resolve_name(name);
  /* A name this libseccomp does not know is a syscall newer than it; runc skips those too. */
  if (nr == __NR_SCMP_ERROR) return;
  struct scmp_arg_cmp cmp[6];
  unsigned n = 0;
  for (char **c = conditions; *c; c++) {
    unsigned index;
    int op;
    unsigned long long a, b;
    if (n >= 6 || sscanf(*c, "%u %d %llu %llu", &index, &op, &a, &b) != 4) {
      errno = 0;
      die("seccomp: bad condition '%s' for %s", *c, name);
    }
    cmp[n++] = (struct scmp_arg_cmp){.arg = index, .op = (enum scmp_compare)op, .datum_a = a, .datum_b = b};
  }
  int rc = seccomp_rule_add_array(seccomp_filter, action, nr, n, cmp);
  if (rc < 0) {
    errno = -rc;
    die("seccomp: add rule for %s (action 0x%x, %u conditions)", name, action, n);
  }
}

static void seccomp_install(void) {
  if (!seccomp_filter) die("seccomp_load before seccomp_init");
  int rc = seccomp_load(seccomp_filter);
  seccomp_release(seccomp_filter);
  seccomp_filter = NULL;
  if (rc == 0) return;
  if (rc == -EINVAL || rc == -ENOSYS) {
    warnf("seccomp filter not loaded, the kernel refused it (%s): the container runs without its seccomp profile", strerror(-rc));
    return;
  }
  errno = -rc;
  die("load seccomp filter");
}

static void set_caps(uint64_t eff, uint64_t perm, uint64_t inh, uint64_t amb) {
  struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct d[2];
  d[0].effective = (uint32_t)eff;
  d[1].effective = (uint32_t)(eff >> 32);
  d[0].permitted = (uint32_t)perm;
  d[1].permitted = (uint32_t)(perm >> 32);
  d[0].inheritable = (uint32_t)inh;
  d[1].inheritable = (uint32_t)(inh >> 32);
  if (syscall(SYS_capset, &h, d) < 0) die("capset");
  for (int c = 0; c < 64; c++)
    if ((amb >> c) & 1)
      if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0) warnf("raise ambient capability %d: %s", c, strerror(errno));
}

static void wait_for_start(void) {
  if (listen_fd < 0) die("park requested before listen");
  for (;;) {
    int conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) {
      if (errno == EINTR) continue;
      die("accept start connection");
    }
    char byte;
    ssize_t r = read(conn, &byte, 1);
    if (r == 1) {
      close(listen_fd);
      listen_fd = -1;
      /* The start command reads this socket until EOF: execve closes it (CLOEXEC), and a failed
       * execve writes its error here first. */
      report_fd = conn;
      return;
    }
    close(conn);
  }
}

/* ---- kernels without setns(2) ----
 * gVisor before Aug 2023 has no setns at all (linux64.go: setns -> EOPNOTSUPP, "Needs filesystem
 * support", gvisor.dev/issue/140) and no /proc/<pid>/ns/{mnt,ipc,uts}. A process cannot be moved
 * into a namespace there; it can only be born into one. So a process that stays in a container's
 * namespaces forks what must run there:
 *  - the keeper: forked after the pod-level namespaces (ipc, uts, net) are made and before the
 *    mount and pid namespaces; it stays in the host's mount namespace, and forks the helper of every
 *    container that joins this one's namespaces (an app container joining its pod's sandbox);
 *  - the exec agent: forked into the container's pid namespace right after its init, it enters the
 *    container's root once the init has set it up, and forks every `exec` process.
 * The runtime hands its work to either over a unix socket ("handover": fds by SCM_RIGHTS, then the
 * rest of the instruction list), so the forked child goes on exactly as the helper would have. The
 * agent is not the init's parent, and its children's intermediate parent exits at once: gVisor
 * reparents orphans to the nearest subreaper up the tree (task_exit.go findReparentTargetLocked), the
 * shim, which then reaps the exec'd process as it reaps a runc exec. */
static int agent_listen_fd = -1;
static int agent_pair[2] = {-1, -1};
static int handed_over;

#define HANDOVER_MAGIC 0x736b686fU
#define HANDOVER_MAX_FDS 250
struct handover_header {
  uint32_t magic, nfds, preserve, has_console;
  uint64_t stream_len;
};

/* A unix socket bound (or connected) at dir/name: a relative name keeps long state directories
 * under sun_path's 108 bytes. */
static int unix_socket_in(const char *dir, const char *name, int do_listen) {
  int cwd = open(".", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (chdir(dir) < 0) die("chdir %s", dir);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(name) >= sizeof sa.sun_path) die("socket name too long: %s", name);
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", name);
  if (fd < 0) die("socket");
  if (do_listen) {
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0) die("listen on %s/%s", dir, name);
  } else if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    die("connect to %s/%s (the container's keeper or exec agent is gone)", dir, name);
  }
  if (cwd >= 0) {
    if (fchdir(cwd) < 0) die("chdir back");
    close(cwd);
  }
  return fd;
}

static void write_all(int fd, const char *buf, size_t len, const char *what) {
  while (len > 0) {
    ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("send %s", what);
    buf += w;
    len -= (size_t)w;
  }
}

/* Sends the report fd, stdio, preserved fds and the console connection, then the rest of the
 * instruction list, to the process listening at `path`; this helper's part ends here. */
static void hand_over(const char *path, int preserve) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) die("handover socket %s is not an absolute path in a directory", path);
  *slash = '\0';
  int sock = unix_socket_in(dir, slash + 1, 0);
  int one = 1;
  if (setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) die("SO_PASSCRED");
  int fds[HANDOVER_MAX_FDS];
  uint32_t n = 0;
  if (preserve < 0 || preserve > HANDOVER_MAX_FDS - 6) die("too many preserved fds (%d)", preserve);
  fds[n++] = report_fd;
  for (int i = 0; i < 3 + preserve; i++) fds[n++] = i;
  if (console_fd >= 0) fds[n++] = console_fd;
  struct handover_header h = {
      .magic = HANDOVER_MAGIC, .nfds = n, .preserve = (uint32_t)preserve, .has_console = console_fd >= 0, .stream_len = stream_len - cursor};
  send_control(sock, &h, sizeof h, SCM_RIGHTS, fds, sizeof(int) * n, "the handover");
  write_all(sock, stream + cursor, stream_len - cursor, "instructions");
  /* A process forked on the other side names itself with SCM_CREDENTIALS, which the kernel
   * translates into our pid namespace; the connection closes when the other side is done. */
  for (;;) {
    char byte;
    struct ucred cred;
    size_t got = sizeof cred;
    if (recv_control(sock, &byte, 1, SCM_CREDENTIALS, &cred, &got) <= 0) break;
    if (got == sizeof cred) dprintf(report_fd, "pid %d\n", (int)cred.pid);
  }
  close(sock);
  _exit(0);
}

static void send_own_pid(int sock) {
  struct ucred cred = {.pid = getpid(), .uid = getuid(), .gid = getgid()};
  send_control(sock, "p", 1, SCM_CREDENTIALS, &cred, sizeof cred, "the process's pid to the runtime");
}

static void read_all(int fd, char *buf, size_t len) {
  while (len > 0) {
    ssize_t r = read(fd, buf, len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) _exit(1);
    buf += r;
    len -= (size_t)r;
  }
}

/* The other end of hand_over: installs the fds where the helper had them and takes the list. */
static void receive_handover(int conn) {
  struct handover_header h;
  int got[HANDOVER_MAX_FDS];
  size_t got_len = sizeof got;
  ssize_t r = recv_control(conn, &h, sizeof h, SCM_RIGHTS, got, &got_len);
  if (r != (ssize_t)sizeof h || h.magic != HANDOVER_MAGIC) _exit(1);
  uint32_t n = (uint32_t)(got_len / sizeof(int));
  if (n != h.nfds || n < 4 || n != 4 + h.preserve + (h.has_console ? 1 : 0)) _exit(1);
  stream_len = (size_t)h.stream_len;
  stream = malloc(stream_len + 1);
  if (!stream) _exit(1);
  read_all(conn, stream, stream_len);
  cursor = 0;
  handover_conn = conn;
  /* Lift everything above the numbers it goes to, then place stdio and the preserved fds. */
  int high[HANDOVER_MAX_FDS];
  for (uint32_t i = 0; i < n; i++) {
    high[i] = fcntl(got[i], F_DUPFD_CLOEXEC, 300);
    if (high[i] < 0) _exit(1);
    close(got[i]);
  }
  report_fd = high[0];
  for (uint32_t i = 0; i < 3 + h.preserve; i++) {
    if (dup2(high[1 + i], (int)i) < 0) die("place handed-over fd %u", i);
    close(high[1 + i]);
  }
  console_fd = h.has_console ? high[n - 1] : -1;
  handed_over = 1;
}

/* Accepts handovers for ever; returns only in a forked child that has received one. */
static void serve_handovers(int lfd) {
  /* The children are the helpers of other containers or of exec'd processes, and leave at once. */
  signal(SIGCHLD, SIG_IGN);
  for (;;) {
    int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      _exit(1);
    }
    pid_t pid = fork();
    if (pid == 0) {
      signal(SIGCHLD, SIG_DFL);
      close(lfd);
      receive_handover(conn);
      return;
    }
    close(conn);
  }
}

/* What the keeper and the agent must not hold: the report pipe (the runtime waits for its EOF),
 * the container's stdio (the shim waits for their EOF) and the console. */
static void detach_from_runtime(int devnull) {
  for (int i = 0; i < 3; i++) dup2(devnull, i);
  close(devnull);
  if (report_fd >= 0) close(report_fd);
  report_fd = -1;
  if (console_fd >= 0) close(console_fd);
  console_fd = -1;
  if (listen_fd >= 0) close(listen_fd);
  listen_fd = -1;
  if (handover_conn >= 0) close(handover_conn);
  handover_conn = -1;
}

static void start_keeper(int lfd) {
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) die("open /dev/null");
  pid_t pid = fork();
  if (pid < 0) die("fork the namespace keeper");
  if (pid > 0) {
    close(lfd);
    close(devnull);
    dprintf(report_fd, "keeper %d\n", pid);
    return;
  }
  detach_from_runtime(devnull);
  serve_handovers(lfd);
}

/* Forks the container's init (the first process of its pid namespace), then its exec agent. */
static void fork_init_and_agent(void) {
  if (agent_listen_fd < 0) die("fork_with_agent before agent_listen");
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) die("open /dev/null");
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, agent_pair) < 0) die("socketpair");
  pid_t init = fork();
  if (init < 0) die("fork");
  if (handover_conn >= 0) {
    /* Forked at the runtime's pid level (the keeper's), so the pids reported below are right. */
    close(handover_conn);
    handover_conn = -1;
  }
  if (init == 0) {
    close(devnull);
    close(agent_pair[1]);
    close(agent_listen_fd);
    agent_listen_fd = -1;
    return;
  }
  dprintf(report_fd, "pid %d\n", init);
  pid_t agent = fork();
  if (agent < 0) die("fork the exec agent");
  if (agent > 0) {
    dprintf(report_fd, "agent %d\n", agent);
    _exit(0);
  }
  close(agent_pair[0]);
  detach_from_runtime(devnull);
  /* The init sends its root once it is set up; EOF means it died first. */
  char name[16];
  int root;
  size_t root_len = sizeof root;
  ssize_t r = recv_control(agent_pair[1], name, sizeof name, SCM_RIGHTS, &root, &root_len);
  if (r <= 0 || root_len != sizeof root) _exit(0);
  close(agent_pair[1]);
  if (fchdir(root) < 0 || chroot(".") < 0 || chdir("/") < 0) _exit(1);
  root_is_chroot = r >= 6 && !memcmp(name, "chroot", 6);
  close(root);
  /* The agent is visible in the container's pid namespace: not dumpable, so that the container
   * cannot ptrace it or open its /proc/<pid>/fd without CAP_SYS_PTRACE. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  serve_handovers(agent_listen_fd);
}

static void send_root_to_agent(void) {
  if (agent_pair[0] < 0) return;
  int root = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (root < 0) die("open the container's root for the exec agent");
  send_fd(agent_pair[0], root, root_is_chroot ? "chroot" : "root");
  close(root);
  close(agent_pair[0]);
  agent_pair[0] = -1;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    dprintf(2, "usage: sandkube-init INSTRUCTION_FILE REPORT_FD (run by sandkube-runtime)\n");
    return 2;
  }
  report_fd = atoi(argv[2]);
  if (fcntl(report_fd, F_SETFD, FD_CLOEXEC) < 0) {
    report_fd = -1;
    die("report fd %s is not open", argv[2]);
  }
  read_stream(argv[1]);

  while (cursor < stream_len) {
    const char *op = next_str();
    errno = 0;
    if (!strcmp(op, "cgroup_join")) {
      const char *path = next_str();
      char pid[32];
      snprintf(pid, sizeof pid, "%d", getpid());
      int fd = open(path, O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, pid, strlen(pid)) < 0) warnf("join cgroup %s: %s", path, strerror(errno));
      if (fd >= 0) close(fd);
    } else if (!strcmp(op, "console_connect")) {
      const char *path = next_str();
      struct sockaddr_un sa = {.sun_family = AF_UNIX};
      if (strlen(path) >= sizeof sa.sun_path) die("console socket path too long: %s", path);
      strcpy(sa.sun_path, path);
      console_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (console_fd < 0) die("socket");
      if (connect(console_fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect console socket %s", path);
    } else if (!strcmp(op, "join_namespaces")) {
      char **pairs = next_array();
      join_namespaces(pairs);
      free(pairs);
    } else if (!strcmp(op, "userns_new")) {
      const char *uid_map = next_str();
      new_user_namespace(uid_map, next_str());
    } else if (!strcmp(op, "mount_prepare")) {
      long slot = (long)next_num();
      const char *source = next_str();
      int recursive = (int)next_num();
      unsigned long propagation = (unsigned long)next_unum();
      int idmap_recursive = (int)next_num();
      const char *uid_map = next_str(), *gid_map = next_str(), *userns_path = next_str();
      prepare_mount(slot, source, recursive, propagation, idmap_recursive, uid_map, gid_map, userns_path);
    } else if (!strcmp(op, "root_attach")) {
      attach_root((long)next_num());
    } else if (!strcmp(op, "mount_attach")) {
      long slot = (long)next_num();
      attach_mount(slot, next_str());
    } else if (!strcmp(op, "unshare")) {
      int flags = (int)next_num();
      int optional = (int)next_num();
      if (unshare(flags) < 0) {
        if (!optional) die("unshare namespaces (flags 0x%x)", flags);
        warnf("namespace (flags 0x%x) not created, the kernel refused it: %s", flags, strerror(errno));
      }
    } else if (!strcmp(op, "fork")) {
      int wait_child = (int)next_num();
      pid_t pid = fork();
      if (pid < 0) die("fork");
      if (pid == 0 && handover_conn >= 0) {
        send_own_pid(handover_conn);
        close(handover_conn);
        handover_conn = -1;
      }
      if (pid > 0) {
        /* After a handover our pid namespace may be the container's: the child names itself to
         * the runtime's side instead (send_own_pid). */
        if (handover_conn >= 0) close(handover_conn);
        else dprintf(report_fd, "pid %d\n", pid);
        if (!wait_child) _exit(0);
        /* After a handover the runtime is not our parent and learns the status from the report. */
        if (!handed_over) close(report_fd);
        int status;
        while (waitpid(pid, &status, 0) < 0)
          if (errno != EINTR) _exit(1);
        int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        if (handed_over) dprintf(report_fd, "exit %d\n", code);
        _exit(code);
      }
      /* A child of an exiting runtime must die with the container's pid 1, never linger. */
    } else if (!strcmp(op, "mount")) {
      const char *src = next_str(), *dst = next_str(), *type = next_str();
      unsigned long flags = (unsigned long)next_unum();
      const char *data = next_str();
      int optional = (int)next_num();
      int rc = mount(*src ? src : NULL, dst, *type ? type : NULL, flags, *data ? data : NULL);
      if (rc < 0 && errno == EINVAL && (flags & MS_BIND) && (flags & MS_REC)) {
        /* gVisor before 2023 has no recursive bind mounts (EINVAL); submounts are then not shown. */
        rc = mount(*src ? src : NULL, dst, NULL, flags & ~MS_REC, NULL);
        if (rc == 0) warnf("recursive bind of %s refused (EINVAL); bound without submounts", src);
      }
      unsigned long atime = MS_STRICTATIME | MS_RELATIME | MS_NOATIME | MS_NODIRATIME | MS_LAZYTIME;
      if (rc < 0 && errno == EINVAL && !(flags & MS_BIND) && (flags & atime)) {
        /* gVisor before 2023 rejects atime flags it does not implement (EINVAL). */
        rc = mount(*src ? src : NULL, dst, *type ? type : NULL, flags & ~atime, *data ? data : NULL);
        if (rc == 0) warnf("mount %s on %s: atime flags refused (EINVAL); mounted without them", type, dst);
      }
      if (rc < 0 && !strcmp(type, "devpts") && (errno == ENODEV || errno == EINVAL)) {
        /* gVisor before 2023 cannot make a new devpts instance (ENODEV); the sandbox's own one is
         * shared instead, so ptys of other containers in this sandbox are visible. */
        rc = mount("/dev/pts", dst, NULL, MS_BIND, NULL);
        if (rc == 0) warnf("new devpts instance refused (%s); bound the sandbox's /dev/pts instead", strerror(ENODEV));
      }
      if (rc < 0) {
        if (!strcmp(type, "sysfs") && (errno == EPERM || errno == EBUSY)) {
          /* sysfs refuses a new mount outside a new network namespace; runc binds /sys then. */
          if (mount("/sys", dst, NULL, MS_BIND | MS_REC, NULL) == 0) {
            bind_remount(dst, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
            continue;
          }
        }
        if (optional) warnf("mount %s on %s (%s) skipped: %s", src, dst, type, strerror(errno));
        else die("mount %s on %s (type %s)", *src ? src : type, dst, *type ? type : "bind");
      }
    } else if (!strcmp(op, "remount")) {
      const char *dst = next_str();
      unsigned long flags = (unsigned long)next_unum();
      remount_or_view(NULL, dst, flags, NULL);
    } else if (!strcmp(op, "remount_bind")) {
      const char *src = next_str(), *dst = next_str();
      unsigned long flags = (unsigned long)next_unum();
      remount_or_view(src, dst, flags, next_str());
    } else if (!strcmp(op, "parent_mount_private")) {
      make_parent_mount_private(next_str());
    } else if (!strcmp(op, "readonly_root_early")) {
      readonly_root_early(next_str());
    } else if (!strcmp(op, "propagation")) {
      const char *dst = next_str();
      unsigned long flags = (unsigned long)next_unum();
      int rc = mount(NULL, dst, NULL, flags, NULL);
      /* gVisor before Aug 2023 rejects MS_REC (EINVAL) and MS_SLAVE; its mounts never propagate
       * outside the sandbox, so private or slave asked for is what the mount already is. */
      if (rc < 0 && errno == EINVAL && (flags & MS_REC)) rc = mount(NULL, dst, NULL, flags & ~MS_REC, NULL);
      if (rc < 0 && errno == EINVAL && (flags & (MS_PRIVATE | MS_SLAVE))) {
        warnf("propagation 0x%lx on %s refused (EINVAL); left as it is (this kernel does not propagate mounts)", flags, dst);
        continue;
      }
      if (rc < 0) die("set propagation 0x%lx on %s", flags, dst);
    } else if (!strcmp(op, "root_propagation")) {
      unsigned long flags = (unsigned long)next_unum();
      if (mount(NULL, "/", NULL, flags, NULL) == 0) continue;
      if (errno != EINVAL) die("set propagation 0x%lx on /", flags);
      /* gVisor before 2023 rejects MS_SLAVE and MS_REC propagation changes with EINVAL; its mounts
       * do not propagate to anything outside the sandbox, so a private root isolates just as well. */
      if (mount(NULL, "/", NULL, MS_PRIVATE | MS_REC, NULL) == 0 || mount(NULL, "/", NULL, MS_PRIVATE, NULL) == 0)
        warnf("root propagation 0x%lx refused by the kernel (EINVAL); made the root private instead", flags);
      else
        warnf("mount propagation is not implemented by this kernel (EINVAL); mounts stay private");
    } else if (!strcmp(op, "mkdir")) {
      const char *path = next_str();
      mkdir_p(path, (mode_t)next_num());
    } else if (!strcmp(op, "touch")) {
      touch(next_str());
    } else if (!strcmp(op, "symlink")) {
      const char *target = next_str(), *path = next_str();
      if (symlink(target, path) < 0 && errno != EEXIST) die("symlink %s -> %s", path, target);
    } else if (!strcmp(op, "device")) {
      const char *path = next_str(), *type = next_str();
      unsigned maj = (unsigned)next_num(), min = (unsigned)next_num();
      mode_t mode = (mode_t)next_num();
      uid_t uid = (uid_t)next_num();
      gid_t gid = (gid_t)next_num();
      const char *host = next_str();
      mode_t kind = type[0] == 'b' ? S_IFBLK : type[0] == 'p' ? S_IFIFO : S_IFCHR;
      unlink(path);
      if (mknod(path, kind | (mode & 07777), makedev(maj, min)) == 0) {
        if (chown(path, uid, gid) < 0) warnf("chown %s: %s", path, strerror(errno));
      } else {
        /* mknod is refused in user namespaces and some sandboxes; a bind of the host node is what
         * runc does there too (libcontainer/rootfs_linux.go bindMountDeviceNode). */
        touch(path);
        if (mount(host, path, NULL, MS_BIND, NULL) < 0) die("create device %s (mknod and bind of %s)", path, host);
      }
    } else if (!strcmp(op, "pivot_root")) {
      do_pivot_root(next_str());
    } else if (!strcmp(op, "move_root")) {
      do_move_root(next_str());
    } else if (!strcmp(op, "mask")) {
      mask_path(next_str());
    } else if (!strcmp(op, "readonly")) {
      readonly_path(next_str());
    } else if (!strcmp(op, "remount_root_ro")) {
      if (root_readonly_by_overlay) continue;
      if (bind_remount("/", MS_RDONLY) < 0)
        die("remount / read-only (refused, so the container is not created rather than left writable)");
    } else if (!strcmp(op, "sysctl")) {
      const char *path = next_str(), *value = next_str();
      int fd = open(path, O_WRONLY | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT) {
        warnf("sysctl %s absent in this kernel; not set", path);
        continue;
      }
      if (fd < 0) die("open sysctl %s", path);
      if (write(fd, value, strlen(value)) < 0) die("set sysctl %s=%s", path, value);
      close(fd);
    } else if (!strcmp(op, "hostname")) {
      const char *name = next_str();
      if (sethostname(name, strlen(name)) < 0) die("sethostname %s", name);
    } else if (!strcmp(op, "domainname")) {
      const char *name = next_str();
      if (setdomainname(name, strlen(name)) < 0) die("setdomainname %s", name);
    } else if (!strcmp(op, "write")) {
      const char *path = next_str(), *value = next_str();
      write_file(path, value);
    } else if (!strcmp(op, "oom_score_adj")) {
      const char *value = next_str();
      int fd = open("/proc/self/oom_score_adj", O_RDWR | O_CLOEXEC);
      if (fd < 0) die("open /proc/self/oom_score_adj");
      if (write(fd, value, strlen(value)) < 0) {
        /* Lowering it needs CAP_SYS_RESOURCE, which some sandboxes withhold even from root (this
         * lab's VM: CapEff 0x1fffeffffff). Only the OOM killer's choice changes, not isolation. */
        if (errno != EACCES && errno != EPERM) die("set oom_score_adj %s", value);
        warnf("oom_score_adj %s refused (%s: no CAP_SYS_RESOURCE here); left as inherited", value, strerror(errno));
      }
      close(fd);
    } else if (!strcmp(op, "rlimit")) {
      int res = (int)next_num();
      struct rlimit rl = {.rlim_cur = (rlim_t)next_unum(), .rlim_max = (rlim_t)next_unum()};
      if (setrlimit(res, &rl) < 0) die("setrlimit %d", res);
    } else if (!strcmp(op, "pty")) {
      uid_t uid = (uid_t)next_num();
      make_pty(uid, (gid_t)next_num());
    } else if (!strcmp(op, "chown_stdio")) {
      uid_t uid = (uid_t)next_num();
      gid_t gid = (gid_t)next_num();
      /* Lets a non-root process write /dev/stdout when stdio are pipes (runc does the same). */
      for (int i = 0; i < 3; i++) (void)fchown(i, uid, gid);
    } else if (!strcmp(op, "setsid")) {
      if (setsid() < 0 && errno != EPERM) die("setsid");
    } else if (!strcmp(op, "bounding")) {
      uint64_t keep = next_unum();
      int last = last_cap();
      if (root_is_chroot) keep &= ~(1ULL << CAP_SYS_CHROOT_BIT);
      for (int c = 0; c <= last; c++)
        if (!((keep >> c) & 1) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) die("drop capability %d from the bounding set", c);
    } else if (!strcmp(op, "user")) {
      uid_t uid = (uid_t)next_num();
      gid_t gid = (gid_t)next_num();
      char **groups = next_array();
      size_t n = 0;
      while (groups[n]) n++;
      gid_t *gids = calloc(n + 1, sizeof(gid_t));
      for (size_t i = 0; i < n; i++) gids[i] = (gid_t)strtoul(groups[i], NULL, 10);
      if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) die("keepcaps");
      if (setgroups(n, gids) < 0) die("setgroups");
      if (setresgid(gid, gid, gid) < 0) die("setgid %u", gid);
      if (setresuid(uid, uid, uid) < 0) die("setuid %u", uid);
      prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    } else if (!strcmp(op, "caps")) {
      uint64_t eff = next_unum(), perm = next_unum(), inh = next_unum(), amb = next_unum();
      if (root_is_chroot) {
        const uint64_t chroot_bit = 1ULL << CAP_SYS_CHROOT_BIT;
        eff &= ~chroot_bit, perm &= ~chroot_bit, inh &= ~chroot_bit, amb &= ~chroot_bit;
      }
      set_caps(eff, perm, inh, amb);
    } else if (!strcmp(op, "no_new_privs")) {
      if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("set no_new_privs");
    } else if (!strcmp(op, "seccomp_init")) {
      uint32_t def = (uint32_t)next_unum();
      char **arches = next_array();
      char **flags = next_array();
      seccomp_start(def, arches, flags);
      free(arches);
      free(flags);
    } else if (!strcmp(op, "seccomp_rule")) {
      const char *name = next_str();
      uint32_t action = (uint32_t)next_unum();
      char **conditions = next_array();
      seccomp_rule(name, action, conditions);
      free(conditions);
    } else if (!strcmp(op, "seccomp_load")) {
      seccomp_install();
    } else if (!strcmp(op, "recursive_readonly")) {
      recursive_readonly(next_str());
    } else if (!strcmp(op, "chdir")) {
      const char *dir = next_str();
      if (chdir(dir) < 0) die("chdir to cwd %s", dir);
    } else if (!strcmp(op, "resolve_exec")) {
      const char *name = next_str();
      resolve_exec(name, next_str());
    } else if (!strcmp(op, "listen")) {
      const char *dir = next_str();
      listen_fd = unix_socket_in(dir, next_str(), 1);
    } else if (!strcmp(op, "handover")) {
      const char *path = next_str();
      hand_over(path, (int)next_num());
    } else if (!strcmp(op, "keeper")) {
      const char *dir = next_str();
      start_keeper(unix_socket_in(dir, next_str(), 1));
    } else if (!strcmp(op, "agent_listen")) {
      const char *dir = next_str();
      agent_listen_fd = unix_socket_in(dir, next_str(), 1);
    } else if (!strcmp(op, "fork_with_agent")) {
      fork_init_and_agent();
    } else if (!strcmp(op, "agent_root")) {
      send_root_to_agent();
    } else if (!strcmp(op, "umount")) {
      const char *path = next_str();
      if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) warnf("unmount %s: %s", path, strerror(errno));
    } else if (!strcmp(op, "exit")) {
      _exit(0);
    } else if (!strcmp(op, "ready")) {
      dprintf(report_fd, "ready\n");
      close(report_fd);
      report_fd = -1;
    } else if (!strcmp(op, "park")) {
      wait_for_start();
    } else if (!strcmp(op, "exec")) {
      int keep_until = (int)next_num();
      char **args = next_array();
      char **env = next_array();
      if (!resolved_exec[0]) die("exec before resolve_exec");
      mark_fds_cloexec(keep_until);
      execve(resolved_exec, args, env);
      die("exec %s", resolved_exec);
    } else {
      die("unknown instruction '%s' (runtime and sandkube-init are from different builds)", op);
    }
  }
  die("instruction list ended without exec");
}
