import { lstatSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureSuccess, runCommand } from "../../src/common/exec.js";
import { busyboxRootfs } from "../../src/images/busybox.js";

/**
 * The 3-layer image of issue 10, as directories that real overlayfs mounts wrote, so the
 * deletions are the kernel's own whiteout device and opaque xattr. Shared by the host test and the
 * script the gVisor test runs inside runsc (whose overlay writes the same two, seen in the lab).
 */

export interface WhiteoutLayers {
  /** busybox, data/a, data/b, etc/keep, opt/x/old, opt/x/sub/older. */
  readonly base: string;
  /** Adds data/c; removes opt/x and makes it again with only `new` (an opaque directory). */
  readonly middle: string;
  /** Removes data/a (a whiteout device). */
  readonly top: string;
}

/** What the unpacked image must hold under data, etc/keep and opt. */
export const EXPECTED_TREE = [
  "data/",
  "data/b",
  "data/c",
  "etc/keep",
  "opt/",
  "opt/x/",
  "opt/x/new",
];

function write(root: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), content);
  }
}

/** Runs `change` in an overlay of `lowers` (topmost first) whose upper dir is `upper`. */
async function throughOverlay(
  lowers: readonly string[],
  upper: string,
  change: (merged: string) => void,
): Promise<void> {
  const work = `${upper}.work`;
  const merged = `${upper}.merged`;
  for (const dir of [upper, work, merged]) mkdirSync(dir, { recursive: true });
  ensureSuccess(
    await runCommand([
      "mount",
      "-t",
      "overlay",
      "overlay",
      "-o",
      `lowerdir=${lowers.join(":")},upperdir=${upper},workdir=${work}`,
      merged,
    ]),
  );
  try {
    change(merged);
  } finally {
    ensureSuccess(await runCommand(["umount", merged]));
  }
  rmSync(work, { recursive: true, force: true });
  rmSync(merged, { recursive: true, force: true });
}

export async function makeWhiteoutLayers(dir: string): Promise<WhiteoutLayers> {
  const layers = {
    base: join(dir, "layer1"),
    middle: join(dir, "layer2"),
    top: join(dir, "layer3"),
  };
  await busyboxRootfs(layers.base);
  write(layers.base, {
    "data/a": "a",
    "data/b": "b",
    "etc/keep": "keep",
    "opt/x/old": "old",
    "opt/x/sub/older": "older",
  });
  await throughOverlay([layers.base], layers.middle, (merged) => {
    writeFileSync(join(merged, "data/c"), "c");
    rmSync(join(merged, "opt/x"), { recursive: true });
    mkdirSync(join(merged, "opt/x"));
    writeFileSync(join(merged, "opt/x/new"), "new");
  });
  await throughOverlay([layers.middle, layers.base], layers.top, (merged) => {
    rmSync(join(merged, "data/a"));
  });
  return layers;
}

/** "path" for files, "path/" for directories, "path (special, rdev N)" for anything else. */
export function tree(root: string, relative = ""): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, relative)).sort()) {
    const path = relative === "" ? name : `${relative}/${name}`;
    const stat = lstatSync(join(root, path));
    if (stat.isDirectory()) out.push(`${path}/`, ...tree(root, path));
    else if (stat.isFile() || stat.isSymbolicLink()) out.push(path);
    else out.push(`${path} (special, rdev ${stat.rdev})`);
  }
  return out;
}

/** The part of an image the layers change: everything under data and opt, and etc/keep. */
export function changedPart(rootfs: string): string[] {
  return tree(rootfs).filter((p) => /^(data|opt)(\/|$)/.test(p) || p === "etc/keep");
}
