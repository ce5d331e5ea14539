import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  chainIds,
  extractionTarget,
  UnpackWithoutMountsError,
  namesAddedIn,
  whiteoutPlan,
} from "../../src/images/unpack-without-mounts.js";

// The pure half of unpacking without mounts (runsc old, docs/gvisor-blockers.md B5). The whole path
// runs against real containerd inside runsc old in test/gvisor/node-up.test.ts.

const sha = (text: string): string => `sha256:${createHash("sha256").update(text).digest("hex")}`;

test("chain ids follow the image spec: the first is the diff id, then sha256(parent + ' ' + diff id)", () => {
  const [a, b, c] = [sha("a"), sha("b"), sha("c")];
  const second = sha(`${a} ${b}`);
  assert.deepEqual(chainIds([a, b, c]), [a, second, sha(`${second} ${c}`)]);
  assert.deepEqual(chainIds([]), []);
});

test("a first layer is extracted into the bind mount's source; a later one into the overlay's upperdir", () => {
  const root = "/var/lib/sk/containerd/root/io.containerd.snapshotter.v1.overlayfs/snapshots";
  assert.deepEqual(extractionTarget(`mount -t bind ${root}/7/fs /sandkube-unused -o rbind,rw\n`), {
    kind: "full",
    dir: `${root}/7/fs`,
  });
  assert.deepEqual(
    extractionTarget(
      `mount -t overlay overlay /sandkube-unused -o index=off,workdir=${root}/8/work,upperdir=${root}/8/fs,lowerdir=${root}/7/fs\n`,
    ),
    { kind: "overlay-upper", dir: `${root}/8/fs`, lowers: [`${root}/7/fs`] },
  );
  assert.throws(
    () => extractionTarget("mount -t tmpfs none /x -o size=1m"),
    (error: unknown) =>
      error instanceof UnpackWithoutMountsError &&
      /cannot tell where to unpack/.test(error.message),
  );
});

test("whiteouts and opaque directories are read from the layer's member list", () => {
  assert.deepEqual(
    whiteoutPlan([
      "./",
      "./etc/",
      "./etc/.wh.old.conf",
      "./data/",
      "./data/.wh..wh..opq",
      "./data/new",
      ".wh.gone",
      "opt/x/.wh.y",
    ]),
    { removed: ["etc/old.conf", "gone", "opt/x/y"], opaqueDirs: ["data"] },
  );
  assert.deepEqual(whiteoutPlan(["./.wh..wh..opq", "a"]), { removed: [], opaqueDirs: ["."] });
});

test("an opaque directory keeps only the names its own layer adds there", () => {
  const members = [
    "./",
    "./opt/",
    "./opt/x/",
    "./opt/x/.wh..wh..opq",
    "./opt/x/new",
    "./opt/x/sub/",
    "./opt/x/sub/f",
    "./opt/y",
  ];
  assert.deepEqual([...namesAddedIn(members, "opt/x")].sort(), ["new", "sub"]);
  assert.deepEqual([...namesAddedIn(members, "opt")].sort(), ["x", "y"]);
  assert.deepEqual([...namesAddedIn(members, ".")], ["opt"]);
});
