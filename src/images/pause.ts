import { chmod, copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SANDBOX_IMAGE } from "../plan/cluster-config.js";
import { isStaticElf } from "./elf.js";
import { buildOciArchive, type BuiltImage } from "./oci-layout.js";

/**
 * native/build.sh's output, copied into dist/bin by `npm run build` so the published package ships
 * it; this file runs from dist/src/images/.
 */
export const PAUSE_BINARY = fileURLToPath(new URL("../../bin/pause", import.meta.url));

/**
 * The sandbox image every pod starts with, made from native/pause.c: no registry is needed (the
 * sandboxes sandkube targets often reach none), and the image holds one static binary and nothing
 * else. Tagged SANDBOX_IMAGE, which `up` pins as containerd's sandbox image.
 */
export async function buildPauseImage(
  outFile: string,
  pauseBinary: string = PAUSE_BINARY,
): Promise<BuiltImage> {
  const isStatic = await isStaticElf(pauseBinary).catch((error: NodeJS.ErrnoException) => {
    throw new Error(
      `the pause binary ${pauseBinary} cannot be read (${error.code ?? error.message}); build it with npm run build:native`,
    );
  });
  if (!isStatic)
    throw new Error(
      `the pause binary ${pauseBinary} is not static; rebuild it with npm run build:native`,
    );
  const root = await mkdtemp(join(tmpdir(), "sandkube-pause-"));
  try {
    await copyFile(pauseBinary, join(root, "pause"));
    await chmod(join(root, "pause"), 0o755);
    return await buildOciArchive({
      fromDir: root,
      name: SANDBOX_IMAGE,
      output: outFile,
      entrypoint: ["/pause"],
      // 65535 as upstream's pause image does: it needs no privilege, and runAsNonRoot pods pass.
      user: "65535:65535",
      layer: { mtime: new Date(0), owner: "root" },
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
