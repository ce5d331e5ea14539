import { KNOWN_CAPABILITIES } from "./process/capabilities.js";
import {
  SECCOMP_ACTIONS,
  SECCOMP_ARCHES,
  SECCOMP_FLAGS,
  SECCOMP_OPERATORS,
} from "./process/seccomp.js";

import { OCI_VERSION, RUNTIME_VERSION } from "./version.js";

export { OCI_VERSION, RUNTIME_VERSION };

/**
 * `features`: what this runtime implements. containerd offers CRI user namespaces only to a handler
 * listing both the `user` namespace and idmap mounts (internal/cri/server/service.go
 * supportsCRIUserns); both are implemented (userns.ts, the helper's userns_new and mount_prepare).
 * "rro" is listed because containerd reports recursive read-only support for a handler only when
 * its mountOptions include it (and the kernel is 5.12+).
 */
export function featuresJson(): Record<string, unknown> {
  return {
    ociVersionMin: "1.0.0",
    ociVersionMax: OCI_VERSION,
    hooks: [],
    mountOptions: [
      "async",
      "atime",
      "bind",
      "defaults",
      "dev",
      "diratime",
      "dirsync",
      "exec",
      "idmap",
      "lazytime",
      "loud",
      "mand",
      "noatime",
      "nodev",
      "nodiratime",
      "noexec",
      "nolazytime",
      "nomand",
      "norelatime",
      "nostrictatime",
      "nosuid",
      "private",
      "rbind",
      "relatime",
      "remount",
      "ridmap",
      "ro",
      "rprivate",
      "rro",
      "rshared",
      "rslave",
      "runbindable",
      "rw",
      "shared",
      "silent",
      "slave",
      "strictatime",
      "suid",
      "sync",
      "unbindable",
    ],
    linux: {
      namespaces: ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
      capabilities: KNOWN_CAPABILITIES,
      cgroup: { v1: true, v2: true, systemd: false, systemdUser: false, rdma: false },
      seccomp: {
        enabled: true,
        actions: [...SECCOMP_ACTIONS].sort(),
        operators: [...SECCOMP_OPERATORS].sort(),
        archs: [...SECCOMP_ARCHES].sort(),
        knownFlags: [...SECCOMP_FLAGS].sort(),
        supportedFlags: [...SECCOMP_FLAGS].sort(),
      },
      apparmor: { enabled: false },
      selinux: { enabled: false },
      intelRdt: { enabled: false },
      mountExtensions: { idmap: { enabled: true } },
    },
    annotations: { "org.sandkube.runtime.version": RUNTIME_VERSION },
  };
}
