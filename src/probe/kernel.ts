import type { ProbeIO } from "./io.js";
import type { MountEntry } from "./mountinfo.js";

/**
 * One observation for or against "this is gVisor". `strong` signals exist only in gVisor's sentry;
 * `weak` ones also occur on real kernels, so several are needed before they count.
 */
export interface GvisorEvidence {
  readonly id: string;
  readonly weight: "strong" | "weak";
  readonly pointsToGvisor: boolean;
  readonly observed: string;
}

export interface KernelFacts {
  /** /proc/sys/kernel/osrelease (else parsed from /proc/version), what `uname -r` prints. */
  readonly release: string | null;
  /** /proc/version, trimmed. */
  readonly version: string | null;
  readonly gvisor: {
    readonly verdict: boolean;
    readonly evidence: readonly GvisorEvidence[];
  };
}

// gVisor's syscall tables (pkg/sentry/syscalls/linux/linux64.go) hard-code this build string for
// every release they report, 4.4.0 and 4.19.0-gvisor alike.
const GVISOR_BUILD = "#1 SMP Sun Jan 10 15:06:54 PST 2016";
const WEAK_SIGNALS_NEEDED = 3;

/** Pure: the evidence list and the verdict it supports. */
export function judgeGvisor(evidence: readonly GvisorEvidence[]): boolean {
  const hits = evidence.filter((e) => e.pointsToGvisor);
  return (
    hits.some((e) => e.weight === "strong") ||
    hits.filter((e) => e.weight === "weak").length >= WEAK_SIGNALS_NEEDED
  );
}

export async function probeKernel(
  io: ProbeIO,
  mounts: readonly MountEntry[] | null,
): Promise<KernelFacts> {
  const osrelease = await io.read("/proc/sys/kernel/osrelease");
  const procVersion = await io.read("/proc/version");
  const version = procVersion.ok ? procVersion.value.trim() : null;
  // Older gVisor has no /proc/sys/kernel/osrelease; /proc/version names the same release.
  const release = osrelease.ok
    ? osrelease.value.trim()
    : (/^Linux version (\S+)/.exec(version ?? "")?.[1] ?? null);
  const evidence: GvisorEvidence[] = [];

  evidence.push({
    id: "proc-version-build",
    weight: "strong",
    pointsToGvisor: version?.includes(GVISOR_BUILD) ?? false,
    observed: version === null ? "/proc/version unreadable" : `/proc/version: ${version}`,
  });
  // "-gvisor" is gVisor's own suffix (April 2026 on); 4.4.0 is what it reported before, but a
  // genuine 4.4 kernel reports it too.
  evidence.push({
    id: "release-gvisor-suffix",
    weight: "strong",
    pointsToGvisor: release?.endsWith("-gvisor") ?? false,
    observed: `release ${release ?? "unreadable"}`,
  });
  evidence.push({
    id: "release-4.4.0",
    weight: "weak",
    pointsToGvisor: release === "4.4.0",
    observed: `release ${release ?? "unreadable"}`,
  });

  // pkg/sentry/fsimpl/proc/tasks.go serves /proc/sentry-meminfo (the sentry's Go heap) in every
  // gVisor release; newer ones also add the /proc/gvisor directory.
  const sentryMeminfo = await io.kind("/proc/sentry-meminfo");
  evidence.push({
    id: "proc-sentry-meminfo",
    weight: "strong",
    pointsToGvisor: sentryMeminfo.ok,
    observed: sentryMeminfo.ok ? "/proc/sentry-meminfo exists" : "/proc/sentry-meminfo absent",
  });
  const procGvisor = await io.kind("/proc/gvisor");
  evidence.push({
    id: "proc-gvisor-dir",
    weight: "strong",
    pointsToGvisor: procGvisor.ok && procGvisor.value === "directory",
    observed: procGvisor.ok ? "/proc/gvisor exists" : "/proc/gvisor absent",
  });

  // gVisor's cgroupfs has a "job" controller (pkg/sentry/kernel/cgroup.go) that Linux never had.
  const cgroups = await io.read("/proc/cgroups");
  const hasJob = cgroups.ok && /^job\s/m.test(cgroups.value);
  evidence.push({
    id: "cgroup-job-controller",
    weight: "strong",
    pointsToGvisor: hasJob,
    observed: cgroups.ok
      ? `/proc/cgroups ${hasJob ? "lists" : "does not list"} a "job" controller`
      : "/proc/cgroups unreadable",
  });

  const kmsg = await io.kind("/dev/kmsg");
  evidence.push({
    id: "dev-kmsg-absent",
    weight: "weak",
    pointsToGvisor: !kmsg.ok,
    observed: kmsg.ok ? "/dev/kmsg exists" : `/dev/kmsg: ${kmsg.code}`,
  });

  // gVisor's VFS names the source of every mount "none", and its root is a gofer (9p or
  // overlay over it); a booted Linux root names a block device.
  const root = mounts?.find((m) => m.mountPoint === "/");
  const allSourcesNone =
    mounts !== null && mounts.length > 0 && mounts.every((m) => m.source === "none");
  evidence.push({
    id: "mount-sources-none",
    weight: "weak",
    pointsToGvisor: allSourcesNone,
    observed:
      root === undefined
        ? "no root mount in /proc/self/mountinfo"
        : `root is ${root.fsType} from "${root.source}"; ${allSourcesNone ? "every" : "not every"} mount source is "none"`,
  });

  // A 9p root is how runsc's gofer serves the container's filesystem (the seed's sandbox showed
  // `runsc-root on / type 9p`), though QEMU and WSL guests can boot from 9p too.
  evidence.push({
    id: "root-9p",
    weight: "weak",
    pointsToGvisor: root?.fsType === "9p",
    observed: root === undefined ? "no root mount" : `root filesystem type ${root.fsType}`,
  });

  const cpuinfo = await io.read("/proc/cpuinfo");
  const modelUnknown = cpuinfo.ok && /^model name\s*:\s*unknown\s*$/m.test(cpuinfo.value);
  evidence.push({
    id: "cpuinfo-model-unknown",
    weight: "weak",
    pointsToGvisor: modelUnknown,
    observed: cpuinfo.ok
      ? `/proc/cpuinfo model name ${modelUnknown ? "is" : "is not"} "unknown"`
      : "/proc/cpuinfo unreadable",
  });

  return { release, version, gvisor: { verdict: judgeGvisor(evidence), evidence } };
}
