import { test } from "node:test";
import assert from "node:assert/strict";
import {
  INSTALL_COMPONENTS,
  PRODUCT_BINARIES,
  RUNC,
  componentsForUp,
  productBinary,
  type ProductBinary,
} from "../../src/install/components.js";
import {
  acceptFound,
  componentsOf,
  judgeVersion,
  searchesPath,
  selectBinaries,
  toBinaryPaths,
} from "../../src/install/resolve-plan.js";
import {
  checkDownload,
  downloadRecipe,
  proxyFor,
  RELEASE_DOWNLOADS,
  type ReleaseDownload,
} from "../../src/install/download-plan.js";
import {
  buildManifest,
  cacheLayout,
  recipeOf,
  staleReason,
  type Stamp,
} from "../../src/install/build-plan.js";
import { DEFAULT_CACHE_DIR, installCacheDir } from "../../src/install/cache.js";
import { parseInstallArgs } from "../../src/cli/install.js";
import { UsageError } from "../../src/cli/usage-error.js";

function binary(name: string): ProductBinary {
  const found = productBinary(name);
  assert.ok(found, name);
  return found;
}

const ok = (stdout: string, stderr = "", exitCode = 0) => ({ stdout, stderr, exitCode });

test("the install table yields every binary a node runs, each once, CNI plugins in cni/", () => {
  const names = PRODUCT_BINARIES.map((entry) => entry.name);
  assert.equal(new Set(names).size, names.length);
  for (const name of [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kubectl",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "crictl",
    "kube-proxy",
    "coredns",
    "local-path-provisioner",
    "helm",
  ])
    assert.equal(binary(name).destination, "bin", name);
  for (const name of ["loopback", "host-local", "bridge", "portmap"])
    assert.equal(binary(name).destination, "cni", name);
  assert.ok(!names.includes("runsc") && !names.includes("critest"), "lab-only stays in lab/");
});

// Outputs as the lab's builds print them (test/fixtures/*.transcript.json).
test("judgeVersion reads each upstream's own version line and holds it against the pin", () => {
  const cases: [string, ReturnType<typeof ok>][] = [
    ["kubelet", ok("Kubernetes v1.34.4\n")],
    ["kubectl", ok('{"clientVersion":{"gitVersion":"v1.34.4"}}')],
    ["etcd", ok("etcd Version: 3.6.16\nGit SHA: Not provided\n")],
    ["containerd", ok("containerd github.com/containerd/containerd/v2 v2.4.2 \n")],
    ["containerd-shim-runc-v2", ok("containerd-shim-runc-v2:\n  Version:  v2.4.2\n  Revision: \n")],
    ["ctr", ok("ctr github.com/containerd/containerd/v2 v2.4.2\n")],
    ["runc", ok("runc version 1.4.4\nspec: 1.3.0\n")],
    ["crictl", ok("crictl version v1.34.0\n")],
    ["kube-proxy", ok("Kubernetes v1.34.4\n")],
    ["coredns", ok("CoreDNS-1.13.2\nlinux/amd64, go1.26.8, \n")],
    ["local-path-provisioner", ok("local-path-provisioner version v0.0.37\n")],
    ["helm", ok("v4.3.2")],
    // CNI plugins print their about line on stderr and exit 1 without CNI_COMMAND.
    ["loopback", ok("", "CNI loopback plugin v1.9.1\nCNI protocol versions supported: 1.0.0\n", 1)],
  ];
  for (const [name, output] of cases) {
    const verdict = judgeVersion(binary(name), output);
    assert.equal(verdict.matches, true, `${name}: ${JSON.stringify(verdict)}`);
  }
  assert.deepEqual(judgeVersion(binary("runc"), ok("runc version 1.1.5+ds1\n")), {
    matches: false,
    version: "1.1.5+ds1",
    detail: "reports 1.1.5+ds1, sandkube pins v1.4.4",
  });
  const none = judgeVersion(binary("kubelet"), { ...ok("", "exec format error"), exitCode: 126 });
  assert.equal(none.matches, false);
  assert.match(
    none.matches ? "" : none.detail,
    /^reports no version \(exit status 126: exec format error\)/,
  );
});

test("a helm with build metadata, or one whose -X was lost, is not the pinned helm", () => {
  // The source default without ldflags is "v4.3"; a build off the tag appends "+unreleased".
  for (const printed of ["v4.3", "v4.3.2+unreleased", "v4.2.1"])
    assert.equal(judgeVersion(binary("helm"), ok(printed)).matches, false, printed);
  assert.equal(
    judgeVersion(binary("local-path-provisioner"), ok("local-path-provisioner version 0.0.1\n"))
      .matches,
    false,
    "without -X main.VERSION it reports its source default",
  );
});

test("install order: containerd, runc and kubelet first; helm, the user's tool, last", () => {
  const names = INSTALL_COMPONENTS.map((component) => component.name);
  assert.deepEqual(names.slice(0, 2), ["containerd", "runc"]);
  assert.ok(names.indexOf("kubelet") < names.indexOf("kube-apiserver"));
  assert.equal(names.at(-1), "helm");
  assert.equal(new Set(names).size, names.length);
  const kubeProxy = INSTALL_COMPONENTS.find((component) => component.name === "kube-proxy");
  const kubelet = INSTALL_COMPONENTS.find((component) => component.name === "kubelet");
  assert.equal(kubeProxy?.module, kubelet?.module);
  assert.equal(kubeProxy?.version, kubelet?.version);
  assert.deepEqual(kubeProxy?.ldflags, kubelet?.ldflags);
  const proxyStrategy = kubeProxy?.strategy;
  const kubeletStrategy = kubelet?.strategy;
  assert.ok(proxyStrategy?.kind === "wrapper" && kubeletStrategy?.kind === "wrapper");
  // One wrapper module: kube-proxy's packages join kubelet's in the same `go get`.
  assert.equal(proxyStrategy.wrapper, kubeletStrategy.wrapper);
  assert.equal(proxyStrategy.localReplacement("k8s.io/api"), "v0.34.4");
});

test("up needs the node's components and the add-ons; kube-proxy only where it runs; never helm", () => {
  const withProxy = componentsForUp({ kubeProxy: true });
  const withoutProxy = componentsForUp({ kubeProxy: false });
  assert.ok(!withProxy.includes("helm") && !withoutProxy.includes("helm"));
  assert.ok(withProxy.includes("kube-proxy"));
  assert.ok(!withoutProxy.includes("kube-proxy"));
  for (const name of ["containerd", "runc", "kubelet", "etcd", "coredns", "local-path-provisioner"])
    assert.ok(withoutProxy.includes(name), name);
  assert.deepEqual(
    withProxy.filter((name) => name !== "kube-proxy"),
    withoutProxy,
  );
  // In table order, so installMissing({ only }) builds containerd, runc and kubelet first.
  const order = INSTALL_COMPONENTS.map((component) => component.name);
  assert.deepEqual(
    withProxy,
    order.filter((name) => withProxy.includes(name)),
  );
  const { binaries, unknown } = selectBinaries(withoutProxy);
  assert.deepEqual(unknown, []);
  assert.ok(!binaries.some((entry) => entry.name === "helm" || entry.name === "kube-proxy"));
});

test("a mismatched version is used from --bin-dir with a warning, and refused from PATH", () => {
  const verdict = judgeVersion(binary("runc"), ok("runc version 1.1.5+ds1\n"));
  assert.deepEqual(acceptFound("bin-dir", "/opt/k/runc", verdict), {
    use: true,
    warning: "/opt/k/runc reports 1.1.5+ds1, sandkube pins v1.4.4; used because --bin-dir names it",
  });
  assert.deepEqual(acceptFound("path", "/usr/sbin/runc", verdict), {
    use: false,
    reason: "/usr/sbin/runc reports 1.1.5+ds1, sandkube pins v1.4.4; not used",
  });
  const good = judgeVersion(binary("runc"), ok("runc version 1.4.4\n"));
  assert.deepEqual(acceptFound("path", "/usr/bin/runc", good), { use: true });
  assert.equal(searchesPath(binary("bridge")), false, "a bridge on PATH is something else");
  assert.equal(searchesPath(binary("kubelet")), true);
});

test("--only selects by component or binary name and names the unknown ones", () => {
  const { binaries, unknown } = selectBinaries(["containerd", "kubectl", "nope"]);
  assert.deepEqual(
    binaries.map((entry) => entry.name),
    ["containerd", "containerd-shim-runc-v2", "ctr", "kubectl"],
  );
  assert.deepEqual(unknown, ["nope"]);
  assert.deepEqual(componentsOf(["ctr", "loopback", "kubelet", "containerd"]), [
    "containerd",
    "cni",
    "kubelet",
  ]);
});

test("toBinaryPaths maps names to the lead's BinaryPaths and names a missing binary", () => {
  const paths = Object.fromEntries(
    PRODUCT_BINARIES.map((entry) => [entry.name, `/c/${entry.name}`]),
  );
  const result = toBinaryPaths(paths, { ociRuntime: "/c/runc", cniBinDir: "/data/cni/bin" });
  assert.equal(result.kubeApiserver, "/c/kube-apiserver");
  assert.equal(result.containerdShim, "/c/containerd-shim-runc-v2");
  assert.equal(result.cniBinDir, "/data/cni/bin");
  const { etcd: _etcd, ...withoutEtcd } = paths;
  assert.throws(
    () => toBinaryPaths(withoutEtcd, { ociRuntime: "/r", cniBinDir: "/c" }),
    /etcd is not resolved; run `sandkube install`/,
  );
});

test("proxyFor reads HTTPS_PROXY and NO_PROXY as curl does", () => {
  const url = new URL("https://dl.k8s.io/release/v1.34.4/bin/linux/amd64/kubelet");
  assert.equal(proxyFor(url, {}), undefined);
  assert.equal(proxyFor(url, { HTTPS_PROXY: "http://p:3128" })?.href, "http://p:3128/");
  assert.equal(proxyFor(url, { https_proxy: "p:3128" })?.href, "http://p:3128/");
  assert.equal(proxyFor(url, { HTTPS_PROXY: "http://p:3128", NO_PROXY: "k8s.io" }), undefined);
  assert.equal(proxyFor(url, { HTTPS_PROXY: "http://p:3128", no_proxy: ".k8s.io" }), undefined);
  assert.equal(proxyFor(url, { HTTPS_PROXY: "http://p:3128", NO_PROXY: "*" }), undefined);
  assert.equal(
    proxyFor(url, { HTTPS_PROXY: "http://p:3128", NO_PROXY: "notk8s.io" })?.host,
    "p:3128",
  );
  assert.equal(proxyFor(new URL("http://x/"), { HTTPS_PROXY: "http://p:3128" }), undefined);
});

test("download entries: https, a 64-digit sha256, and every binary of the component", () => {
  assert.deepEqual(RELEASE_DOWNLOADS, [], "no pin without the release's own published sha256");
  const good: ReleaseDownload = {
    component: "runc",
    artifacts: [
      {
        url: "https://github.com/opencontainers/runc/releases/download/v1.4.4/runc.amd64",
        sha256: "a".repeat(64),
        format: "binary",
        members: { runc: "runc" },
      },
    ],
  };
  assert.deepEqual(checkDownload(good, ["runc"]), []);
  const bad: ReleaseDownload = {
    component: "containerd",
    artifacts: [
      { url: "http://x/c.tgz", sha256: "ABC", format: "tar.gz", members: { ctr: "bin/ctr" } },
    ],
  };
  assert.deepEqual(checkDownload(bad, ["containerd", "ctr"]), [
    "http://x/c.tgz: only https:// downloads are allowed",
    "http://x/c.tgz: sha256 must be 64 lower-case hex digits",
    "containerd: no artifact yields containerd",
  ]);
  const [artifact] = good.artifacts;
  assert.ok(artifact);
  const repinned = { ...good, artifacts: [{ ...artifact, sha256: "b".repeat(64) }] };
  assert.notEqual(downloadRecipe(good), downloadRecipe(repinned), "a new pin downloads again");
});

const runc = RUNC;

function stamp(overrides: Partial<Stamp>): Stamp {
  return {
    name: "runc",
    module: runc.module,
    version: runc.version,
    recipe: recipeOf(runc),
    goVersion: "go1.26.8",
    builtAt: "2026-12-07T00:00:00.000Z",
    buildSeconds: 60,
    // Written by the lab before it shared sandkube's cache: the old folder's path.
    binaries: [{ name: "runc", path: "/var/cache/sandkube-lab/bin/runc", sha256: "aa" }],
    ...overrides,
  };
}

test("staleReason: a stamp stays valid when the cache is reached by another path; sha256 decides", () => {
  const layout = cacheLayout("/var/cache/sandkube");
  const current = new Map([["/var/cache/sandkube/bin/runc", "aa"]]);
  assert.equal(staleReason(runc, layout, stamp({}), current), undefined);
  assert.equal(
    staleReason(runc, layout, stamp({}), new Map([["/var/cache/sandkube/bin/runc", "bb"]])),
    "/var/cache/sandkube/bin/runc changed since it was built",
  );
  const downloaded = stamp({ source: "download", recipe: "download-recipe" });
  assert.equal(staleReason(runc, layout, downloaded, current), "recipe changed");
  assert.equal(staleReason(runc, layout, downloaded, current, ["download-recipe"]), undefined);
});

test("buildManifest keeps stamps of components the writer does not know (install keeps runsc)", () => {
  const layout = cacheLayout("/c");
  const runsc = stamp({ name: "runsc", module: "gvisor.dev/gvisor", recipe: "lab's own" });
  const manifest = buildManifest(
    layout,
    INSTALL_COMPONENTS,
    new Map([
      ["runsc", runsc],
      ["runc", stamp({})],
    ]),
    [],
  );
  assert.equal(manifest.cacheDir, "/c");
  assert.deepEqual(
    manifest.components.map((entry) => [entry.name, entry.source]),
    [
      ["runc", "go"],
      ["runsc", "go"],
    ],
  );
});

test("the cache: SANDKUBE_CACHE_DIR, else the lab's SANDKUBE_LAB_DIR, else /var/cache/sandkube", () => {
  assert.equal(DEFAULT_CACHE_DIR, "/var/cache/sandkube");
  assert.equal(installCacheDir({}), "/var/cache/sandkube");
  assert.equal(installCacheDir({ SANDKUBE_LAB_DIR: "/l" }), "/l");
  assert.equal(installCacheDir({ SANDKUBE_LAB_DIR: "/l", SANDKUBE_CACHE_DIR: "/c" }), "/c");
});

test("parseInstallArgs: flags, defaults and one-line usage errors", () => {
  assert.deepEqual(parseInstallArgs([], {}), {
    cacheDir: "/var/cache/sandkube",
    json: false,
    help: false,
  });
  assert.deepEqual(
    parseInstallArgs(
      ["--bin-dir", "/opt/k8s", "--cache-dir=/c", "--only", "kubelet,containerd", "--json"],
      {},
    ),
    {
      binDir: "/opt/k8s",
      cacheDir: "/c",
      only: ["kubelet", "containerd"],
      json: true,
      help: false,
    },
  );
  const usage = (argv: string[], pattern: RegExp): void =>
    assert.throws(
      () => parseInstallArgs(argv, {}),
      (error: unknown) =>
        error instanceof UsageError &&
        error.exitCode === 2 &&
        !error.message.includes("\n") &&
        pattern.test(error.message),
    );
  usage(["--only", "kubelet,runsc"], /--only: unknown runsc; name components \(containerd, runc/);
  usage(["--bin-dir"], /--bin-dir needs a value/);
  usage(["--frobnicate"], /unknown argument "--frobnicate"/);
  usage(["--json=yes"], /--json takes no value/);
});
