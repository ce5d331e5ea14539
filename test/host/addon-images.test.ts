import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { labBinary, labBinDir } from "../../lab/paths.js";
import { scratchContainerdConfig } from "../../lab/scratch-containerd.js";
import { ensureSuccess, runCommand, type CommandResult } from "../../src/common/exec.js";
import {
  buildBinaryImage,
  buildBusyboxImage,
  busyboxImageName,
  COREDNS_IMAGE,
  COREDNS_IMAGE_SPEC,
  ensureAddonImages,
  LOCAL_PATH_PROVISIONER_IMAGE,
  LOCAL_PATH_PROVISIONER_IMAGE_SPEC,
  type AddonImageTarget,
} from "../../src/addons/images.js";
import { DEBIAN_BUSYBOX } from "../../src/images/busybox.js";
import { isStaticElf } from "../../src/images/elf.js";
import { blobPath } from "../../src/images/oci-layout.js";
import { SANDBOX_IMAGE } from "../../src/plan/cluster-config.js";

/**
 * The add-ons' local images on the host kernel: built from the install cache's CoreDNS and
 * local-path-provisioner (and Debian's busybox-static), imported into a scratch containerd 2.4,
 * and run from there with ctr and the cache's runc.
 */

const STACK = ["containerd", "containerd-shim-runc-v2", "ctr", "runc"];
const ADDONS = ["coredns", "local-path-provisioner"];
const SNAPSHOTTER = "overlayfs";

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "SKIPPED: addon image host tests need root (containerd)";
  const stack = STACK.map((b) => labBinary(b)).filter((b) => !existsSync(b));
  if (stack.length > 0)
    return `SKIPPED: lab not built, missing ${stack.join(", ")}; run npm run lab:build`;
  const addons = ADDONS.map((b) => labBinary(b)).filter((b) => !existsSync(b));
  if (addons.length > 0)
    return `SKIPPED: add-on binaries not built yet, missing ${addons.join(", ")}; run \`node dist/src/cli/main.js install --only coredns,local-path-provisioner\``;
  if (!(await isStaticElf(DEBIAN_BUSYBOX).catch(() => false)))
    return "SKIPPED: no static busybox; apt-get install -y busybox-static";
  return undefined;
}

const reason = await skipReason();
if (reason !== undefined) process.stderr.write(`\n*** addon-images: ${reason}\n`);

function sha256(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The image config and the layer's `tar -tv` listing, read back from an OCI layout tarball. */
async function readBack(
  archive: string,
  dir: string,
): Promise<{ config: { config: Record<string, unknown> }; listing: string }> {
  mkdirSync(dir, { recursive: true });
  ensureSuccess(await runCommand(["tar", "-xf", archive, "-C", dir]));
  const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as {
    manifests: { digest: string }[];
  };
  const manifest = JSON.parse(
    readFileSync(join(dir, blobPath(index.manifests[0]?.digest ?? "")), "utf8"),
  ) as { config: { digest: string }; layers: { digest: string }[] };
  const config = JSON.parse(readFileSync(join(dir, blobPath(manifest.config.digest)), "utf8")) as {
    config: Record<string, unknown>;
  };
  const layer = join(dir, blobPath(manifest.layers[0]?.digest ?? ""));
  const listing = ensureSuccess(
    await runCommand(["tar", "--numeric-owner", "-tvzf", layer]),
  ).stdout;
  return { config, listing };
}

describe("add-on images from the install cache (host kernel)", { skip: reason }, () => {
  let scratch: string;
  let containerd: ChildProcess | undefined;
  let target: AddonImageTarget;
  const ctr = (args: readonly string[]): Promise<CommandResult> =>
    runCommand([labBinary("ctr"), "--address", target.socket, "--namespace", "k8s.io", ...args], {
      timeoutMs: 120_000,
    });
  /** `ctr run` with arguments replaces the image's entrypoint and cmd, as a pod's `command` does. */
  const runImage = (image: string, id: string, args: readonly string[]): Promise<CommandResult> =>
    ctr([
      "run",
      "--rm",
      "--snapshotter",
      SNAPSHOTTER,
      "--runc-binary",
      labBinary("runc"),
      image,
      id,
      ...args,
    ]);
  const containers = ["sk-addon-coredns", "sk-addon-lpp", "sk-addon-busybox"];

  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), "sandkube-addon-images-"));
    const dir = join(scratch, "containerd");
    mkdirSync(join(dir, "cni.d"), { recursive: true });
    writeFileSync(join(dir, "config.toml"), await scratchContainerdConfig(dir, SANDBOX_IMAGE, {}));
    target = {
      ctr: labBinary("ctr"),
      socket: join(dir, "containerd.sock"),
      snapshotter: SNAPSHOTTER,
    };
    const log = openSync(join(scratch, "containerd.log"), "w");
    containerd = spawn(labBinary("containerd"), ["--config", join(dir, "config.toml")], {
      stdio: ["ignore", log, log],
      // ctr run starts containerd-shim-runc-v2, which containerd finds on its PATH.
      env: { ...process.env, PATH: `${labBinDir()}:${process.env["PATH"] ?? ""}` },
    });
    closeSync(log);
    await waitFor(
      async () => existsSync(target.socket) && (await ctr(["version"])).exitCode === 0,
      "containerd",
    );
  });

  after(async () => {
    if (target !== undefined) {
      for (const id of containers) {
        await ctr(["task", "kill", "-s", "SIGKILL", id]);
        await ctr(["task", "delete", "--force", id]);
        await ctr(["container", "delete", id]);
      }
    }
    if (containerd?.pid !== undefined && containerd.exitCode === null) {
      const exited = new Promise((r) => containerd?.once("exit", r));
      containerd.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (containerd.exitCode === null) containerd.kill("SIGKILL");
    }
    if (scratch !== undefined) {
      const mounts = readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .map((line) => line.split(" ")[4] ?? "")
        .filter((point) => point.startsWith(scratch))
        .reverse();
      for (const point of mounts) await runCommand(["umount", "-l", point]);
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  test("each image is the same bytes on every build, with its entrypoint, user and files", async () => {
    const coredns = [1, 2].map((n) => join(scratch, `coredns-${n}.tar`));
    const first = await buildBinaryImage(
      COREDNS_IMAGE_SPEC,
      labBinary("coredns"),
      coredns[0] ?? "",
    );
    const second = await buildBinaryImage(
      COREDNS_IMAGE_SPEC,
      labBinary("coredns"),
      coredns[1] ?? "",
    );
    assert.equal(first.name, COREDNS_IMAGE);
    assert.equal(first.manifest.digest, second.manifest.digest);
    assert.equal(sha256(coredns[0] ?? ""), sha256(coredns[1] ?? ""));
    const dns = await readBack(coredns[0] ?? "", join(scratch, "coredns-layout"));
    assert.deepEqual(dns.config.config["Entrypoint"], ["/coredns"]);
    assert.equal(dns.config.config["User"], undefined, "root: port 53 needs NET_BIND_SERVICE");
    assert.match(dns.listing, /^-rwxr-xr-x 0\/0 .* coredns$/m);
    assert.match(dns.listing, /^-rw-r--r-- 0\/0 .* etc\/passwd$/m);
    assert.match(dns.listing, /^drwxrwxrwt 0\/0 .* tmp\/$/m);

    const lpp = [1, 2].map((n) => join(scratch, `lpp-${n}.tar`));
    const lppFirst = await buildBinaryImage(
      LOCAL_PATH_PROVISIONER_IMAGE_SPEC,
      labBinary("local-path-provisioner"),
      lpp[0] ?? "",
    );
    await buildBinaryImage(
      LOCAL_PATH_PROVISIONER_IMAGE_SPEC,
      labBinary("local-path-provisioner"),
      lpp[1] ?? "",
    );
    assert.equal(lppFirst.name, LOCAL_PATH_PROVISIONER_IMAGE);
    assert.equal(sha256(lpp[0] ?? ""), sha256(lpp[1] ?? ""));
    const provisioner = await readBack(lpp[0] ?? "", join(scratch, "lpp-layout"));
    assert.deepEqual(provisioner.config.config["Entrypoint"], ["/usr/bin/local-path-provisioner"]);
    assert.equal(provisioner.config.config["User"], "65534:65534");
    assert.match(provisioner.listing, /^-rwxr-xr-x 0\/0 .* usr\/bin\/local-path-provisioner$/m);

    const busybox = [1, 2].map((n) => join(scratch, `busybox-${n}.tar`));
    await buildBusyboxImage(busybox[0] ?? "");
    await buildBusyboxImage(busybox[1] ?? "");
    assert.equal(sha256(busybox[0] ?? ""), sha256(busybox[1] ?? ""));
  });

  test("ensureAddonImages imports the three images once; a second call finds them present", async () => {
    const binaries = {
      coredns: labBinary("coredns"),
      localPathProvisioner: labBinary("local-path-provisioner"),
    };
    const busybox = await busyboxImageName();
    const first = await ensureAddonImages(target, binaries);
    assert.deepEqual(first.names, {
      coredns: COREDNS_IMAGE,
      localPathProvisioner: LOCAL_PATH_PROVISIONER_IMAGE,
      busybox,
    });
    assert.deepEqual(
      first.outcomes.map((outcome) => [outcome.name, outcome.status]),
      [
        [COREDNS_IMAGE, "imported"],
        [LOCAL_PATH_PROVISIONER_IMAGE, "imported"],
        [busybox, "imported"],
      ],
    );
    const listed = ensureSuccess(await ctr(["images", "ls", "-q"])).stdout.split("\n");
    for (const name of [COREDNS_IMAGE, LOCAL_PATH_PROVISIONER_IMAGE, busybox])
      assert.ok(listed.includes(name), `${name} in ${listed.join(", ")}`);
    const second = await ensureAddonImages(target, binaries);
    assert.deepEqual(
      second.outcomes.map((outcome) => outcome.status),
      ["present", "present", "present"],
    );
  });

  test("CoreDNS runs from its image and reports the pinned version", async () => {
    const result = await runImage(COREDNS_IMAGE, "sk-addon-coredns", ["/coredns", "-version"]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.match(result.stdout, /^CoreDNS-1\.13\.2\nlinux\/amd64, go\d[\w.]*, \n$/);
  });

  test("local-path-provisioner runs from its image by name and reports the pinned version", async () => {
    // The Deployment starts it by name (src/addons/local-path.ts): PATH must find it.
    const result = await runImage(LOCAL_PATH_PROVISIONER_IMAGE, "sk-addon-lpp", [
      "local-path-provisioner",
      "--version",
    ]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.stdout, "local-path-provisioner version v0.0.37\n");
  });

  test("the helper image runs the provisioner's setup script shape: sh, mkdir -m 0777 -p", async () => {
    const busybox = await busyboxImageName();
    const result = await runImage(busybox, "sk-addon-busybox", [
      "/bin/sh",
      "-c",
      'set -eu; VOL_DIR=/tmp/pvc-1/data; mkdir -m 0777 -p "$VOL_DIR"; stat -c %a "$VOL_DIR"; id -u',
    ]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.stdout, "777\n0\n");
  });
});
