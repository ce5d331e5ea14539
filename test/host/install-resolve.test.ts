/**
 * resolveBinaries on this machine's file system: --bin-dir, then PATH, then the cache, each found
 * binary asked for its version. The first tests use small shell scripts that print a version line
 * as stand-ins for the real programs, because the point is the search order and the version rule,
 * not the programs; the last test runs the real binaries the cache holds.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveBinaries, assembleCniBinDir } from "../../src/install/install.js";
import { cacheLayout, recipeOf } from "../../src/install/build-plan.js";
import { sha256OfFile, writeStamp } from "../../src/install/go-build.js";
import { INSTALL_COMPONENTS, PRODUCT_BINARIES } from "../../src/install/components.js";
import { installCacheDir } from "../../src/install/cache.js";

let work = "";

async function standIn(dir: string, name: string, versionLine: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, name);
  await writeFile(path, `#!/bin/sh\necho '${versionLine}'\n`);
  await chmod(path, 0o755);
  return path;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "sandkube-install-resolve-"));
});

after(async () => {
  if (work !== "") await rm(work, { recursive: true, force: true });
});

test("PATH at the pinned version is used; PATH at another version is refused and the cache wins", async () => {
  const cacheDir = join(work, "cache");
  const layout = cacheLayout(cacheDir);
  const pathDir = join(work, "path");
  await standIn(pathDir, "kubelet", "Kubernetes v1.34.4");
  await standIn(pathDir, "runc", "runc version 1.1.5+ds1");
  const cachedRunc = await standIn(layout.bin, "runc", "runc version 1.4.4");
  const runc = INSTALL_COMPONENTS.find((component) => component.name === "runc");
  assert.ok(runc);
  await writeStamp(layout, {
    name: "runc",
    source: "go",
    module: runc.module,
    version: runc.version,
    recipe: recipeOf(runc),
    goVersion: "go1.26.8",
    builtAt: new Date().toISOString(),
    buildSeconds: 1,
    binaries: [{ name: "runc", path: cachedRunc, sha256: (await sha256OfFile(cachedRunc)) ?? "" }],
  });
  const lines: string[] = [];
  const resolution = await resolveBinaries({
    env: { PATH: pathDir },
    cacheDir,
    only: ["kubelet", "runc", "etcd"],
    onProgress: (line) => lines.push(line),
  });
  assert.deepEqual(
    resolution.found.map((entry) => [entry.name, entry.source, entry.version]),
    [
      ["runc", "cache", "v1.4.4"],
      ["kubelet", "path", "v1.34.4"],
    ],
  );
  assert.deepEqual(resolution.missing, ["etcd"]);
  assert.deepEqual(resolution.rejected, [
    {
      name: "runc",
      path: join(pathDir, "runc"),
      reason: `${join(pathDir, "runc")} reports 1.1.5+ds1, sandkube pins v1.4.4; not used`,
    },
  ]);
  assert.deepEqual(lines, [
    `not using runc: ${join(pathDir, "runc")} reports 1.1.5+ds1, sandkube pins v1.4.4; not used`,
  ]);

  // A cache file that no longer has its stamped sha256 is not trusted.
  await writeFile(cachedRunc, "#!/bin/sh\necho 'runc version 1.4.4'\n# changed\n");
  const tampered = await resolveBinaries({
    env: { PATH: "/nonexistent" },
    cacheDir,
    only: ["runc"],
  });
  assert.deepEqual(tampered.missing, ["runc"]);
  assert.match(tampered.rejected[0]?.reason ?? "", /changed since it was installed/);
});

test("--bin-dir comes first and a version other than the pin is used with a warning", async () => {
  const binDir = join(work, "bin-dir");
  const pathDir = join(work, "path-2");
  await standIn(binDir, "runc", "runc version 1.3.0");
  await standIn(pathDir, "runc", "runc version 1.4.4");
  const lines: string[] = [];
  const resolution = await resolveBinaries({
    binDir,
    env: { PATH: pathDir },
    cacheDir: join(work, "empty-cache"),
    only: ["runc"],
    onProgress: (line) => lines.push(line),
  });
  assert.equal(resolution.paths["runc"], join(binDir, "runc"));
  assert.equal(resolution.found[0]?.source, "bin-dir");
  assert.match(
    resolution.found[0]?.warning ?? "",
    /reports 1\.3\.0, sandkube pins v1\.4\.4; used because --bin-dir names it/,
  );
  assert.deepEqual(lines, [`warning: ${resolution.found[0]?.warning ?? ""}`]);
});

test("assembleCniBinDir puts sandkube-cni and loopback side by side, replacing stale links", async () => {
  const dir = join(work, "node-cni");
  const loopback = await standIn(join(work, "cache-cni"), "loopback", "CNI loopback plugin v1.9.1");
  const old = await standIn(join(work, "old"), "sandkube-cni", "old");
  await assembleCniBinDir(dir, { "sandkube-cni": old });
  const fresh = await standIn(join(work, "dist-bin"), "sandkube-cni", "new");
  await assembleCniBinDir(dir, { loopback, "sandkube-cni": fresh });
  assert.equal(await readlink(join(dir, "loopback")), loopback);
  assert.equal(await readlink(join(dir, "sandkube-cni")), fresh);
});

test("the real binaries in sandkube's cache report exactly their pinned versions", async (t) => {
  const cacheDir = installCacheDir();
  const resolution = await resolveBinaries({
    // PATH and the cache's bin/ point at the same real files, so each is version-checked.
    env: { PATH: join(cacheDir, "bin") },
    binDir: join(cacheDir, "bin"),
    cacheDir,
  });
  const fromCache = resolution.found.filter((entry) => entry.source === "bin-dir");
  if (resolution.missing.length === PRODUCT_BINARIES.length) {
    const reason = `SKIPPED: ${cacheDir} holds none of the node's binaries; run \`npx sandkube install\` or \`npm run lab:build\``;
    process.stderr.write(`\n*** ${t.name}: ${reason}\n`);
    t.skip(reason);
    return;
  }
  for (const entry of fromCache)
    assert.equal(entry.warning, undefined, `${entry.name}: ${entry.warning ?? ""}`);
  if (resolution.missing.length > 0)
    process.stderr.write(
      `\n*** ${t.name}: not yet in the cache, not checked: ${resolution.missing.join(", ")}\n`,
    );
});
