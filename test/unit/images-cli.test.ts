import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { defaultOutputName, parseImagesArgs, renderImageList } from "../../src/cli/images.js";
import { UsageError } from "../../src/cli/usage-error.js";
import {
  inspectArchive,
  summarizeArchive,
  UnreadableArchiveError,
} from "../../src/images/archive.js";
import { appletNames, groupFile, passwdFile } from "../../src/images/busybox.js";
import { importArgv, parseImageList } from "../../src/images/containerd.js";
import { tarStream, type TarEntry } from "../../src/images/tar-writer.js";

const scratch = mkdtempSync(join(tmpdir(), "sandkube-images-cli-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

function usageError(message: RegExp): (e: unknown) => boolean {
  return (e: unknown) => e instanceof UsageError && e.exitCode === 2 && message.test(e.message);
}

test("images build: every flag, spaced and with =", () => {
  const parsed = parseImagesArgs([
    "build",
    "--from-dir=/srv/rootfs",
    "--name",
    "busybox:sk",
    "--entrypoint",
    '["/bin/sh","-c"]',
    "--cmd",
    "echo hi",
    "--cmd=--flag-like",
    "--env",
    "A=1",
    "--env=B=x=y",
    "--workdir",
    "/tmp",
    "--user",
    "1000:1000",
    "--preserve-owner",
    "--output",
    "/tmp/out.tar",
    "--data-dir",
    "/d/../data",
    "--json",
  ]);
  assert.deepEqual(parsed, {
    action: "build",
    dataDir: "/data",
    json: true,
    build: {
      fromDirs: ["/srv/rootfs"],
      name: "docker.io/library/busybox:sk",
      entrypoint: ["/bin/sh", "-c"],
      cmd: ["echo hi", "--flag-like"],
      env: ["A=1", "B=x=y"],
      workdir: "/tmp",
      user: "1000:1000",
      preserveOwner: true,
      output: "/tmp/out.tar",
    },
  });
});

test("images build: defaults leave entrypoint, cmd, workdir and user to the image config", () => {
  assert.deepEqual(parseImagesArgs(["build", "--from-dir", "/r", "--name", "registry.k8s.io/x"]), {
    action: "build",
    dataDir: "/var/lib/sandkube",
    json: false,
    build: {
      fromDirs: ["/r"],
      name: "registry.k8s.io/x:latest",
      env: [],
      preserveOwner: false,
      output: null,
    },
  });
});

test("images build: --from-dir repeats, one layer each, lowest first", () => {
  const parsed = parseImagesArgs([
    "build",
    "--from-dir",
    "/l/base",
    "--from-dir=/l/middle",
    "--name",
    "layered:1",
    "--from-dir",
    "/l/top",
  ]);
  assert.equal(parsed.action, "build");
  assert.deepEqual(parsed.action === "build" ? parsed.build.fromDirs : [], [
    "/l/base",
    "/l/middle",
    "/l/top",
  ]);
});

test("images import and ls", () => {
  assert.deepEqual(parseImagesArgs(["import", "/x/a.tar", "--data-dir", "/d"]), {
    action: "import",
    dataDir: "/d",
    json: false,
    file: "/x/a.tar",
  });
  assert.deepEqual(parseImagesArgs(["ls", "--json"]), {
    action: "ls",
    dataDir: "/var/lib/sandkube",
    json: true,
  });
  assert.deepEqual(parseImagesArgs(["--help"]), { action: "help" });
  assert.deepEqual(parseImagesArgs(["ls", "-h"]), { action: "help" });
});

test("bad arguments are one-line UsageErrors naming what was wrong", () => {
  const cases: [string[], RegExp][] = [
    [[], /say what to do: build, import, ls, pull or push/],
    [["tag"], /unknown action "tag"/],
    [["build", "--name", "a"], /--from-dir DIR is required/],
    [["build", "--from-dir", "/r"], /--name NAME is required/],
    [
      ["build", "--from-dir", "/r", "--name", "Bad Name"],
      /--name "Bad Name" is not a valid image name: it contains whitespace/,
    ],
    [["build", "--from-dir", "/r", "--name", `a@sha256:${"0".repeat(64)}`], /has a digest/],
    [
      ["build", "--from-dir", "/r", "--name", "a", "--env", "NOEQUALS"],
      /--env NOEQUALS must be KEY=value/,
    ],
    [["build", "--from-dir", "/r", "--name", "a", "--workdir", "rel"], /must be an absolute path/],
    [
      ["build", "--from-dir", "/r", "--name", "a", "--entrypoint", "[1,2]"],
      /not a JSON array of strings/,
    ],
    [["build", "--from-dir"], /--from-dir needs a value/],
    [["build", "--json=yes"], /--json takes no value/],
    [["build", "extra"], /unexpected argument "extra"/],
    [["import"], /name the tarball/],
    [["import", "a.tar", "b.tar"], /one tarball at a time/],
    [["import", "a.tar", "--name", "x"], /unknown argument "--name"/],
    [["ls", "--output", "x"], /unknown argument "--output"/],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseImagesArgs(args), usageError(message), args.join(" "));
  }
});

test("default output names are readable file names", () => {
  assert.equal(defaultOutputName("docker.io/library/busybox:sk"), "busybox_sk.tar");
  assert.equal(
    defaultOutputName("registry.k8s.io/pause:3.10.2-sandkube"),
    "pause_3.10.2-sandkube.tar",
  );
});

test("ctr import runs locally into the node's snapshotter", () => {
  assert.deepEqual(
    importArgv({ ctr: "/bin/ctr", socket: "/s.sock", snapshotter: "native", file: "/i.tar" }),
    [
      "/bin/ctr",
      "--address",
      "/s.sock",
      "--namespace",
      "k8s.io",
      "images",
      "import",
      "--local",
      "--snapshotter",
      "native",
      "/i.tar",
    ],
  );
});

test("ctr images ls is cut at the header's columns (SIZE holds a space)", () => {
  const d1 = `sha256:${"1".repeat(64)}`;
  const d2 = `sha256:${"2".repeat(64)}`;
  // The layout of Go's tabwriter (padding 1, trailing tab) that cmd/ctr/commands/images/images.go uses.
  const output = [
    "REF                                   TYPE                                            DIGEST                                                                  SIZE      PLATFORMS   LABELS ",
    `docker.io/library/busybox:sk          application/vnd.oci.image.manifest.v1+json      ${d1} 1.0 MiB   linux/amd64 -      `,
    `registry.k8s.io/pause:3.10.2-sandkube application/vnd.oci.image.manifest.v1+json      ${d2} 372.7 KiB linux/amd64 io.cri-containerd.pinned=pinned `,
    "",
  ].join("\n");
  assert.deepEqual(parseImageList(output), [
    { name: "docker.io/library/busybox:sk", digest: d1, size: "1.0 MiB", platforms: "linux/amd64" },
    {
      name: "registry.k8s.io/pause:3.10.2-sandkube",
      digest: d2,
      size: "372.7 KiB",
      platforms: "linux/amd64",
    },
  ]);
  assert.deepEqual(parseImageList(""), []);
  assert.throws(() => parseImageList("NAME SIZE\n"), /unexpected ctr images ls header/);
  assert.match(renderImageList(parseImageList(output)), /^NAME +DIGEST +SIZE/);
  assert.equal(renderImageList([]), "no images\n");
});

test("archives: OCI names as they are, docker-archive tags normalized, anything else refused", () => {
  const oci = summarizeArchive(
    "o.tar",
    new Map([
      ["oci-layout", Buffer.from('{"imageLayoutVersion":"1.0.0"}')],
      [
        "index.json",
        Buffer.from(
          JSON.stringify({
            manifests: [
              { annotations: { "io.containerd.image.name": "docker.io/library/a:1" } },
              { annotations: { "org.opencontainers.image.ref.name": "latest" } },
              { annotations: { "org.opencontainers.image.ref.name": "quay.io/b/c:2" } },
            ],
          }),
        ),
      ],
    ]),
  );
  assert.deepEqual(oci, { format: "oci", names: ["docker.io/library/a:1", "quay.io/b/c:2"] });
  const docker = summarizeArchive(
    "d.tar",
    new Map([
      [
        "manifest.json",
        Buffer.from('[{"Config":"c.json","RepoTags":["busybox:x","me/app"],"Layers":["l.tar"]}]'),
      ],
    ]),
  );
  assert.deepEqual(docker, {
    format: "docker-archive",
    names: ["docker.io/library/busybox:x", "docker.io/me/app:latest"],
  });
  assert.throws(
    () => summarizeArchive("e.tar", new Map()),
    (e: unknown) => e instanceof UnreadableArchiveError && /neither an OCI/.test(e.message),
  );
  assert.throws(
    () => summarizeArchive("f.tar", new Map([["oci-layout", Buffer.from("{}")]])),
    /OCI layout without index.json/,
  );
  assert.throws(
    () => summarizeArchive("g.tar", new Map([["manifest.json", Buffer.from("{not json")]])),
    /not JSON/,
  );
});

test("inspectArchive reads a real tarball and refuses truncated or foreign files", async () => {
  const mtime = new Date(0);
  const member = (path: string, text: string): TarEntry => ({
    path,
    type: "File",
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime,
    size: Buffer.byteLength(text),
    content: Buffer.from(text),
  });
  const chunks: Buffer[] = [];
  for await (const chunk of tarStream([
    member("./manifest.json", '[{"RepoTags":["busybox:x"]}]'),
    member("layer.tar", "x".repeat(2000)),
  ])) {
    chunks.push(chunk);
  }
  const good = join(scratch, "docker.tar");
  writeFileSync(good, Buffer.concat(chunks));
  assert.deepEqual(await inspectArchive(good), {
    format: "docker-archive",
    names: ["docker.io/library/busybox:x"],
  });

  const truncated = join(scratch, "truncated.tar");
  writeFileSync(truncated, Buffer.concat(chunks).subarray(0, 1200));
  await assert.rejects(
    inspectArchive(truncated),
    (e: unknown) => e instanceof UnreadableArchiveError && /is truncated/.test(e.message),
  );
  writeFileSync(truncated, Buffer.concat(chunks).subarray(0, 1536));
  await assert.rejects(
    inspectArchive(truncated),
    /not a readable tar archive \(TAR_BAD_ARCHIVE: Truncated input/,
  );
  const text = join(scratch, "text.tar");
  writeFileSync(text, "hello ".repeat(256));
  await assert.rejects(inspectArchive(text), /not a readable tar archive/);
  await assert.rejects(inspectArchive(join(scratch, "missing.tar")), /does not exist/);
  await assert.rejects(inspectArchive(scratch), /is a directory/);
});

test("busybox rootfs files: applets, users root, 1000 and nobody", () => {
  assert.deepEqual(appletNames("sh\nls\nbusybox\n\nls\nusr/bin/x\n[\n"), ["[", "ls", "sh"]);
  assert.match(passwdFile(), /^root:x:0:0:/m);
  assert.match(passwdFile(), /^user:x:1000:1000:/m);
  assert.match(passwdFile(), /^nobody:x:65534:65534:/m);
  assert.match(groupFile(), /^nogroup:x:65534:$/m);
});
