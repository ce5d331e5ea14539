import { test } from "node:test";
import assert from "node:assert/strict";
import { UsageError } from "../../src/cli/usage-error.js";
import { parseBuildArgs } from "../../lab/build-plan.js";
import {
  buildCommands,
  buildManifest,
  commandLine,
  binaryPath,
  cacheLayout,
  downloadCommand,
  formatDuration,
  installedName,
  parseDpkgQuery,
  parseStamp,
  recipeOf,
  selectComponents,
  shellLine,
  staleReason,
  wrapperGetCommand,
  type Stamp,
} from "../../src/install/build-plan.js";
import {
  kubernetesStagingVersion,
  kubernetesVersionLdflags,
  type GoComponent,
} from "../../src/install/components.js";
import { LAB_COMPONENTS } from "../../lab/components.js";

const names = LAB_COMPONENTS.map((component) => component.name);
const layout = cacheLayout("/lab");

function component(name: string): GoComponent {
  const found = LAB_COMPONENTS.find((entry) => entry.name === name);
  assert.ok(found?.kind === "go", `${name} is a Go component`);
  return found;
}

test("every binary the gVisor runner expects is built, each under one name", () => {
  const binaries = LAB_COMPONENTS.flatMap((entry) =>
    entry.kind === "go"
      ? entry.binaries.map((binary) => `${binary.destination}/${binary.name}`)
      : [],
  );
  assert.deepEqual(new Set(binaries).size, binaries.length);
  for (const name of [
    "runsc",
    "runsc-old",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "crictl",
    "critest",
    "kubelet",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "etcd",
  ])
    assert.ok(binaries.includes(`bin/${name}`), `bin/${name}`);
  for (const name of ["bridge", "loopback", "host-local", "portmap"])
    assert.ok(binaries.includes(`cni/${name}`));
});

test("containerd, runc and kubelet come before the rest of Kubernetes", () => {
  const at = (name: string): number => names.indexOf(name);
  assert.ok(at("debian") < at("runc"), "libseccomp-dev before runc");
  assert.ok(at("containerd") < at("kubelet") && at("runc") < at("kubelet"));
  for (const later of [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "etcd",
    "critest",
  ])
    assert.ok(at("kubelet") < at(later), later);
});

test("parseBuildArgs: defaults, --only lists, --jobs, --json, --force", () => {
  assert.deepEqual(parseBuildArgs([], names), { json: false, jobs: 2, force: false });
  assert.deepEqual(
    parseBuildArgs(
      ["--only", "runc,kubelet", "--only=etcd", "--jobs", "1", "--json", "--force"],
      names,
    ),
    {
      only: ["runc", "kubelet", "etcd"],
      json: true,
      jobs: 1,
      force: true,
    },
  );
});

test("parseBuildArgs: --except builds everything else, in table order", () => {
  const options = parseBuildArgs(["--except", "coredns,helm"], names);
  assert.deepEqual(
    options.only,
    names.filter((name) => name !== "coredns" && name !== "helm"),
  );
  assert.ok(options.only?.includes("kubelet"));
});

test("parseBuildArgs: bad input is a UsageError naming the problem", () => {
  const usage = (argv: string[], pattern: RegExp): void =>
    assert.throws(
      () => parseBuildArgs(argv, names),
      (error: unknown) =>
        error instanceof UsageError && error.exitCode === 2 && pattern.test(error.message),
    );
  usage(["--only", "kubelet,nope"], /unknown component nope; known: debian, runsc/);
  usage(["--only"], /--only needs a value/);
  usage(["--only", ","], /--only needs at least one name/);
  usage(["--jobs", "4"], /--jobs must be 1 or 2/);
  usage(["build"], /unknown argument "build"/);
  usage(["--except", "nope"], /--except: unknown component nope/);
  usage(["--only", "runc", "--except", "helm"], /cannot be combined/);
});

test("selectComponents keeps table order whatever the order of --only", () => {
  assert.deepEqual(
    selectComponents(LAB_COMPONENTS, ["critest", "runc", "runsc"]).map((entry) => entry.name),
    ["runsc", "runc", "critest"],
  );
});

test("Kubernetes version helpers follow hack/lib/version.sh", () => {
  assert.equal(kubernetesStagingVersion("v1.34.4"), "v0.34.4");
  assert.throws(() => kubernetesStagingVersion("1.34"), /not a Kubernetes release version/);
  const ldflags = kubernetesVersionLdflags("v1.34.4");
  assert.ok(ldflags.includes("-X k8s.io/component-base/version.gitVersion=v1.34.4"));
  assert.ok(ldflags.includes("-X k8s.io/client-go/pkg/version.gitMinor=34"));
});

test("go install components: one command, GOBIN in staging, cgo and tags for runc only", () => {
  const runc = buildCommands(layout, component("runc"));
  assert.equal(runc.length, 1);
  assert.deepEqual(runc[0]?.argv, [
    "go",
    "install",
    "-tags",
    "seccomp,urfave_cli_no_docs,netgo,osusergo",
    "-ldflags",
    "-extldflags -static",
    "github.com/opencontainers/runc@v1.4.4",
  ]);
  assert.equal(runc[0]?.env["CGO_ENABLED"], "1");
  assert.equal(runc[0]?.env["GOBIN"], "/lab/staging/runc");
  assert.equal(runc[0]?.env["GOMODCACHE"], "/lab/gomod");
  assert.equal(runc[0]?.env["GOCACHE"], "/lab/gocache");

  const old = buildCommands(layout, component("runsc-old"))[0];
  assert.equal(old?.env["GOTOOLCHAIN"], "go1.21.13");
  assert.equal(old?.env["CGO_ENABLED"], "0");
  assert.ok(!old?.argv.some((arg) => arg.includes("pie")), "gVisor issue 7719: no -buildmode=pie");

  const containerd = buildCommands(layout, component("containerd"))[0];
  assert.deepEqual(containerd?.argv.slice(4), [
    "github.com/containerd/containerd/v2/cmd/containerd@v2.4.2",
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v2.4.2",
    "github.com/containerd/containerd/v2/cmd/ctr@v2.4.2",
  ]);
  assert.deepEqual(downloadCommand(layout, component("containerd")).argv, [
    "go",
    "mod",
    "download",
    "-json",
    "github.com/containerd/containerd/v2@v2.4.2",
  ]);
});

test("wrapper components build inside their module; critest is a test binary", () => {
  const kubelet = buildCommands(layout, component("kubelet"));
  assert.equal(kubelet[0]?.cwd, "/lab/modules/kubernetes");
  assert.deepEqual(kubelet[0]?.argv.slice(0, 4), ["go", "build", "-ldflags", kubelet[0]?.argv[3]]);
  assert.match(
    kubelet[0]?.argv[3] ?? "",
    /^-s -w -X k8s\.io\/component-base\/version\.gitVersion=v1\.34\.4/,
  );
  assert.deepEqual(kubelet[0]?.argv.slice(-3), [
    "-o",
    "/lab/staging/kubelet/kubelet",
    "k8s.io/kubernetes/cmd/kubelet",
  ]);

  const critest = buildCommands(layout, component("critest"))[0];
  assert.deepEqual(critest?.argv.slice(0, 3), ["go", "test", "-c"]);
  assert.equal(critest?.argv.at(-1), "sigs.k8s.io/cri-tools/cmd/critest");

  const kubernetes = LAB_COMPONENTS.filter(
    (entry): entry is GoComponent =>
      entry.kind === "go" &&
      entry.strategy.kind === "wrapper" &&
      entry.strategy.wrapper === "kubernetes",
  );
  const get = wrapperGetCommand(layout, kubernetes);
  assert.equal(get.cwd, "/lab/modules/kubernetes");
  assert.deepEqual(get.argv.slice(0, 3), ["go", "get", "-t"]);
  assert.equal(get.argv.length, 3 + 6);
  assert.ok(get.argv.includes("k8s.io/kubernetes/cmd/kube-apiserver@v1.34.4"));
});

test("installedName is what go writes, including for a /vN module root", () => {
  assert.equal(
    installedName({ pkg: "gvisor.dev/gvisor/runsc", name: "runsc-old", destination: "bin" }),
    "runsc",
  );
  assert.equal(
    installedName({ pkg: "go.etcd.io/etcd/server/v3", name: "etcd", destination: "bin" }),
    "server",
  );
  assert.equal(
    binaryPath(layout, {
      pkg: "github.com/containernetworking/plugins/plugins/meta/portmap",
      name: "portmap",
      destination: "cni",
    }),
    "/lab/cni/portmap",
  );
});

function stampFor(name: string, sha: string): Stamp {
  const entry = component(name);
  return {
    name,
    module: entry.module,
    version: entry.version,
    recipe: recipeOf(entry),
    goVersion: "go1.26.8",
    builtAt: "2026-11-29T03:40:00.000Z",
    buildSeconds: 55,
    binaries: entry.binaries.map((binary) => ({
      name: binary.name,
      path: binaryPath(layout, binary),
      sha256: sha,
    })),
  };
}

test("staleReason: skip only when the recipe matches and every binary has its stamped sha256", () => {
  const runc = component("runc");
  const stamp = stampFor("runc", "aa");
  assert.equal(staleReason(runc, layout, stamp, new Map([["/lab/bin/runc", "aa"]])), undefined);
  assert.equal(staleReason(runc, layout, undefined, new Map()), "no stamp");
  assert.equal(
    staleReason(runc, layout, stamp, new Map([["/lab/bin/runc", undefined]])),
    "/lab/bin/runc missing",
  );
  assert.equal(
    staleReason(runc, layout, stamp, new Map([["/lab/bin/runc", "bb"]])),
    "/lab/bin/runc changed since it was built",
  );
  const bumped: GoComponent = { ...runc, version: "v1.4.5" };
  assert.equal(
    staleReason(bumped, layout, stamp, new Map([["/lab/bin/runc", "aa"]])),
    "recipe changed",
  );
});

test("parseStamp rejects garbage instead of trusting it", () => {
  assert.equal(parseStamp("not json"), undefined);
  assert.equal(parseStamp('{"name":"runc"}'), undefined);
  const stamp = stampFor("runc", "aa");
  assert.deepEqual(parseStamp(JSON.stringify(stamp)), stamp);
});

test("buildManifest lists stamped components in table order with module, version, toolchain and sha256", () => {
  const stamps = new Map([
    ["kubelet", stampFor("kubelet", "cc")],
    ["runc", stampFor("runc", "aa")],
    ["etcd", { ...stampFor("etcd", "dd"), recipe: "outdated" }],
  ]);
  const manifest = buildManifest(layout, LAB_COMPONENTS, stamps, [
    { name: "iptables", version: "1.8.9-2" },
  ]);
  assert.equal(manifest.cacheDir, "/lab");
  assert.deepEqual(
    manifest.components.map((entry) => [entry.name, entry.module, entry.version, entry.goVersion]),
    [
      ["runc", "github.com/opencontainers/runc", "v1.4.4", "go1.26.8"],
      ["kubelet", "k8s.io/kubernetes", "v1.34.4", "go1.26.8"],
    ],
  );
  assert.deepEqual(manifest.components[0]?.binaries, [
    { name: "runc", path: "/lab/bin/runc", sha256: "aa" },
  ]);
  assert.deepEqual(manifest.debian, [{ name: "iptables", version: "1.8.9-2" }]);
});

test("parseDpkgQuery: only fully installed packages count", () => {
  const output =
    "iproute2 6.1.0-3 ii \nkeyutils 1.6.3-2 rc \nlibseccomp-dev:amd64 2.5.4-1+deb12u1 ii \n";
  assert.deepEqual(parseDpkgQuery(output, ["iproute2", "keyutils", "libseccomp-dev", "iptables"]), [
    { name: "iproute2", version: "6.1.0-3" },
    { name: "keyutils" },
    { name: "libseccomp-dev", version: "2.5.4-1+deb12u1" },
    { name: "iptables" },
  ]);
});

test("formatDuration", () => {
  assert.equal(formatDuration(4.25), "4.3s");
  assert.equal(formatDuration(176), "2m56s");
  assert.equal(formatDuration(1500), "25m00s");
});

test("shellLine quotes what a shell would split", () => {
  assert.equal(
    shellLine(["go", "install", "-ldflags", "-extldflags -static", "it's", "a@v1.0.0"]),
    "go install -ldflags '-extldflags -static' 'it'\\''s' a@v1.0.0",
  );
});

test("commandLine carries the environment, so a logged step can be rerun by hand", () => {
  const [install] = buildCommands(layout, component("runc"));
  assert.ok(install);
  const line = commandLine(install);
  assert.match(
    line,
    /^\(cd \/lab\/staging && GOMODCACHE=\/lab\/gomod GOCACHE=\/lab\/gocache .*CGO_ENABLED=1 .*GOBIN=\/lab\/staging\/runc go install /,
  );
});
