import assert from "node:assert/strict";
import { test } from "node:test";
import { RuntimeError } from "../../src/runtime/errors.js";
import { RecordingSyscalls } from "../../src/runtime/recording-syscalls.js";
import { resolveInRootfs } from "../../src/runtime/rootfs/resolve.js";
import { parseSpec } from "../../src/runtime/spec.js";

const base = {
  ociVersion: "1.2.0",
  root: { path: "rootfs" },
  process: { user: { uid: 0, gid: 0 }, args: ["sh"], cwd: "/" },
  linux: { namespaces: [{ type: "mount" }] },
};

test("parseSpec accepts a minimal spec", () => {
  const spec = parseSpec(JSON.stringify(base));
  assert.equal(spec.root.path, "rootfs");
});

test("parseSpec names an unknown namespace type and lists the valid ones", () => {
  const bad = { ...base, linux: { namespaces: [{ type: "mount" }, { type: "netwrk" }] } };
  assert.throws(
    () => parseSpec(JSON.stringify(bad)),
    (e: Error) => {
      assert.ok(e instanceof RuntimeError);
      assert.match(e.message, /linux\.namespaces\[1\]\.type "netwrk" is not a namespace type/);
      assert.match(e.message, /network/);
      return true;
    },
  );
});

test("parseSpec rejects a missing root.path, missing args, relative cwd and bad JSON", () => {
  assert.throws(() => parseSpec(JSON.stringify({ ...base, root: {} })), /root\.path is missing/);
  assert.throws(
    () => parseSpec(JSON.stringify({ ...base, process: { ...base.process, args: [] } })),
    /process\.args/,
  );
  assert.throws(
    () => parseSpec(JSON.stringify({ ...base, process: { ...base.process, cwd: "tmp" } })),
    /process\.cwd must be an absolute path/,
  );
  assert.throws(() => parseSpec("{"), /not valid JSON/);
  assert.throws(
    () => parseSpec(JSON.stringify({ ...base, mounts: [{ destination: "proc" }] })),
    /mounts\[0\]\.destination must be an absolute path/,
  );
});

function rootfsWithLinks(): RecordingSyscalls {
  const sys = new RecordingSyscalls();
  sys.dirs.add("/r");
  sys.dirs.add("/r/etc");
  sys.links.set("/r/etc/mtab", "/proc/mounts");
  sys.links.set("/r/up", "../../host");
  sys.links.set("/r/etc/rel", "../var/run");
  return sys;
}

test("resolveInRootfs keeps absolute symlinks inside the rootfs", () => {
  const sys = rootfsWithLinks();
  assert.equal(resolveInRootfs(sys, "/r", "/etc/mtab", "m"), "/r/proc/mounts");
  assert.equal(resolveInRootfs(sys, "/r", "/etc/rel/x", "m"), "/r/var/run/x");
  assert.equal(resolveInRootfs(sys, "/r", "/a/./b/../c", "m"), "/r/a/c");
});

test("resolveInRootfs refuses a destination escaping through .. or a symlink", () => {
  const sys = rootfsWithLinks();
  assert.throws(
    () => resolveInRootfs(sys, "/r", "/../etc/passwd", "mounts[0].destination"),
    /mounts\[0\]\.destination "\/\.\.\/etc\/passwd" escapes the container's root filesystem through "\.\."/,
  );
  assert.throws(
    () => resolveInRootfs(sys, "/r", "/up/x", "mounts[1].destination"),
    /escapes the container's root filesystem through the symlink \/up -> \.\.\/\.\.\/host/,
  );
});

test("resolveInRootfs stops a symlink loop", () => {
  const sys = new RecordingSyscalls();
  sys.links.set("/r/a", "/b");
  sys.links.set("/r/b", "/a");
  assert.throws(() => resolveInRootfs(sys, "/r", "/a", "m"), /too many levels of symbolic links/);
});
