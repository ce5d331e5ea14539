import type { Check } from "./check.js";
import { fromCommand, fromIo, no, notRun, YES } from "./check.js";
import type { ProbeIO } from "./io.js";
import type { MountEntry } from "./mountinfo.js";
import { mountContaining } from "./mountinfo.js";
import { withScratchDir } from "./scratch.js";

/** Whether containerd's overlayfs snapshotter can work where sandkube keeps its data. */
export interface OverlayFacts {
  readonly dataDir: string;
  /** The filesystem holding the data dir, from /proc/self/mountinfo. */
  readonly dataDirFsType: string | null;
  /** /proc/filesystems lists overlay. */
  readonly kernelSupports: boolean;
  /** lower, upper and work dirs all on the data dir's filesystem (what the snapshotter does). */
  readonly onDataDir: Check;
  /** lower on the data dir, upper and work on a tmpfs (gVisor needs a tmpfs upper layer). */
  readonly tmpfsUpper: Check;
  /** Every scratch mount unmounted and the scratch directory removed. */
  readonly cleanedUp: Check;
}

const PROBE_TEXT = "sandkube overlay probe\n";

async function tryOverlay(
  io: ProbeIO,
  lower: string,
  upper: string,
  work: string,
  merged: string,
): Promise<{ check: Check; unmounted: Check }> {
  const mount = fromCommand(
    await io.run([
      "mount",
      "-t",
      "overlay",
      "overlay",
      "-o",
      `lowerdir=${lower},upperdir=${upper},workdir=${work}`,
      merged,
    ]),
    `mount -t overlay (upper ${upper})`,
  );
  if (mount.result !== "yes") return { check: mount, unmounted: YES };
  let check: Check = mount;
  let unmounted: Check = notRun("not attempted");
  try {
    const seen = await io.read(`${merged}/probe`);
    const written = await io.write(`${merged}/written`, PROBE_TEXT);
    if (!seen.ok) check = fromIo(seen);
    else if (seen.value !== PROBE_TEXT) check = no("EIO", "the lower layer's file read back wrong");
    else check = fromIo(written);
  } finally {
    unmounted = fromCommand(await io.run(["umount", merged]), `umount ${merged}`);
  }
  return { check, unmounted };
}

export async function probeOverlay(
  io: ProbeIO,
  mounts: readonly MountEntry[] | null,
  options: { readonly dataDir: string; readonly isRoot: boolean },
): Promise<OverlayFacts> {
  const filesystems = await io.read("/proc/filesystems");
  const kernelSupports = filesystems.ok && /\toverlay$/m.test(filesystems.value);
  const dataDirFsType =
    mounts === null ? null : (mountContaining(mounts, options.dataDir)?.fsType ?? null);
  const base = { dataDir: options.dataDir, dataDirFsType, kernelSupports };
  if (!options.isRoot) {
    const skipped = notRun("not root: mounting overlayfs needs root");
    return { ...base, onDataDir: skipped, tmpfsUpper: skipped, cleanedUp: YES };
  }

  const unmountFailures: Check[] = [];
  const outcome = await withScratchDir(io, options.dataDir, "overlay", async (dir) => {
    const made = fromCommand(
      await io.run(["mkdir", `${dir}/lower`, `${dir}/upper`, `${dir}/work`, `${dir}/merged`]),
      "mkdir overlay layers",
    );
    if (made.result !== "yes") return { onDataDir: made, tmpfsUpper: made };
    const seeded = fromIo(await io.write(`${dir}/lower/probe`, PROBE_TEXT));
    if (seeded.result !== "yes") return { onDataDir: seeded, tmpfsUpper: seeded };

    const direct = await tryOverlay(
      io,
      `${dir}/lower`,
      `${dir}/upper`,
      `${dir}/work`,
      `${dir}/merged`,
    );
    if (direct.unmounted.result !== "yes") unmountFailures.push(direct.unmounted);

    const tmp = `${dir}/tmpfs`;
    let tmpfsUpper: Check = fromCommand(await io.run(["mkdir", tmp]), `mkdir ${tmp}`);
    if (tmpfsUpper.result === "yes") {
      tmpfsUpper = fromCommand(
        await io.run(["mount", "-t", "tmpfs", "tmpfs", tmp]),
        `mount -t tmpfs ${tmp}`,
      );
    }
    if (tmpfsUpper.result === "yes") {
      try {
        tmpfsUpper = fromCommand(
          await io.run(["mkdir", `${tmp}/upper`, `${tmp}/work`]),
          "mkdir tmpfs layers",
        );
        if (tmpfsUpper.result === "yes") {
          const layered = await tryOverlay(
            io,
            `${dir}/lower`,
            `${tmp}/upper`,
            `${tmp}/work`,
            `${dir}/merged`,
          );
          tmpfsUpper = layered.check;
          if (layered.unmounted.result !== "yes") unmountFailures.push(layered.unmounted);
        }
      } finally {
        const unmounted = fromCommand(await io.run(["umount", tmp]), `umount ${tmp}`);
        if (unmounted.result !== "yes") unmountFailures.push(unmounted);
      }
    }
    return { onDataDir: direct.check, tmpfsUpper };
  });

  const cleanedUp = unmountFailures[0] ?? outcome.removed;
  if (outcome.value === null) {
    return { ...base, onDataDir: outcome.created, tmpfsUpper: outcome.created, cleanedUp };
  }
  return { ...base, ...outcome.value, cleanedUp };
}
