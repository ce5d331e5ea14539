import { test } from "node:test";
import assert from "node:assert/strict";
import { replayIO } from "../../src/probe/io.js";
import {
  parseCniAbout,
  parseCniVersionInfo,
  parseKubectlClientVersion,
  probeBinaries,
  VERSION_QUERIES,
  type BinaryFact,
} from "../../src/probe/binaries.js";
import { loadTranscript, RECORDED_LAB_DIRS, RECORDED_SEARCH_PATH } from "./net-fixtures.js";

function found(fact: BinaryFact | undefined): Extract<BinaryFact, { found: true }> {
  assert.ok(fact?.found, "expected the binary to be found");
  return fact;
}

// When this host was recorded, the lab's folder was where built binaries lived; it is now
// sandkube's install cache, which the lab shares (src/install/cache.ts).
const RECORDED_CACHE_DIRS = {
  cacheBinDir: RECORDED_LAB_DIRS.labBinDir,
  cacheCniDir: RECORDED_LAB_DIRS.labCniDir,
};

test("the recorded host finds lab, Debian and system binaries in search order", async () => {
  const facts = await probeBinaries(
    replayIO(await loadTranscript("net-host-kernel")),
    RECORDED_SEARCH_PATH,
    RECORDED_CACHE_DIRS,
  );
  assert.deepEqual(facts.searchedDirs.slice(0, 5), [
    ...RECORDED_SEARCH_PATH,
    RECORDED_LAB_DIRS.labBinDir,
  ]);
  // Debian's runc 1.1.5 sits on PATH ahead of the lab's own build, which it shadows.
  const runc = found(facts.programs.runc);
  assert.equal(runc.path, "/usr/sbin/runc");
  assert.ok(runc.shadowed.includes("/var/cache/sandkube-lab/bin/runc"), runc.shadowed.join(" "));
  assert.deepEqual(runc.version, { result: "yes", version: "1.1.5+ds1" });
  const containerd = found(facts.programs.containerd);
  assert.equal(containerd.path, "/var/cache/sandkube-lab/bin/containerd");
  assert.match(
    containerd.version.result === "yes" ? containerd.version.version : "",
    /^v2\.\d+\.\d+/,
  );
  const kubelet = found(facts.programs.kubelet);
  assert.match(kubelet.version.result === "yes" ? kubelet.version.version : "", /^v1\.\d+\.\d+$/);
  // A `go install` build of runsc carries no version string; the probe says so instead of guessing.
  const runsc = found(facts.programs.runsc);
  assert.equal(runsc.version.result, "no");
  assert.match(runsc.version.result === "no" ? runsc.version.detail : "", /VERSION_MISSING/);
  assert.equal(facts.programs.k3s.found, false);
  assert.equal(found(facts.programs.ip).version.result, "yes");
  const bridge = facts.cniPlugins.bridge;
  assert.ok(bridge.found);
  assert.equal(bridge.path, "/var/cache/sandkube-lab/cni/bridge");
  assert.ok(bridge.cniVersions.result === "yes" && bridge.cniVersions.versions.includes("1.0.0"));
});

test("inside gVisor the same binaries are found, and an nft-only iptables cannot say its version", async () => {
  const facts = await probeBinaries(
    replayIO(await loadTranscript("net-gvisor")),
    RECORDED_SEARCH_PATH,
    RECORDED_LAB_DIRS,
  );
  const iptables = found(facts.programs.iptables);
  assert.deepEqual(iptables.version, {
    result: "no",
    code: "EPROTONOSUPPORT",
    detail: "iptables: Failed to initialize nft: Protocol not supported",
  });
  assert.equal(found(facts.programs.containerd).version.result, "yes");
});

const parse = (name: keyof typeof VERSION_QUERIES, output: string): string | null =>
  VERSION_QUERIES[name].parse(output);

test("each program's own version output parses", () => {
  // Outputs copied from the lab's builds and Debian 12's packages as recorded in net-gvisor.
  assert.equal(parse("kubelet", "Kubernetes v1.34.4\n"), "v1.34.4");
  assert.equal(parse("kube-apiserver", "Kubernetes v1.34.4\n"), "v1.34.4");
  assert.equal(
    parse(
      "etcd",
      "etcd Version: 3.6.16\nGit SHA: Not provided (use ./build instead of go build)\n",
    ),
    "3.6.16",
  );
  assert.equal(
    parse("containerd", "containerd github.com/containerd/containerd/v2 v2.4.2 \n"),
    "v2.4.2",
  );
  assert.equal(
    parse(
      "containerd-shim-runc-v2",
      "containerd-shim-runc-v2:\n  Version:  v2.4.2\n  Revision: \n",
    ),
    "v2.4.2",
  );
  assert.equal(parse("ctr", "ctr github.com/containerd/containerd/v2 v2.4.2\n"), "v2.4.2");
  assert.equal(parse("runc", "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\n"), "1.1.5+ds1");
  assert.equal(parse("crictl", "crictl version v1.34.0\n"), "v1.34.0");
  assert.equal(parse("crictl", "crictl version unknown\n"), null);
  assert.equal(parse("runsc", "runsc version VERSION_MISSING\nspec: 1.2.1\n"), null);
  assert.equal(parse("iptables", "iptables v1.8.9 (nf_tables)\n"), "1.8.9");
  assert.equal(parse("ip", "ip utility, iproute2-6.1.0, libbpf 1.1.2\n"), "6.1.0");
  assert.equal(parse("bun", "1.4.5"), "1.4.5");
  // Not runnable here (no k3s, crun or released runsc on this machine): formats from upstream
  // source, k3s's cmd/cli version printer, crun's --version and runsc's version.go.
  assert.equal(
    parse("k3s", "k3s version v1.30.2+k3s1 (faaf2f6a)\ngo version go1.22.4\n"),
    "v1.30.2+k3s1",
  );
  assert.equal(parse("crun", "crun version 1.19.1\ncommit: 3e32a70\n"), "1.19.1");
  assert.equal(
    parse("runsc", "runsc version release-20250820.0\nspec: 1.1.0\n"),
    "release-20250820.0",
  );
  assert.equal(parse("ip", "ip utility, iproute2-ss200127\n"), "200127");
});

test("kubectl's JSON client version and the CNI plugins' two answers parse", () => {
  assert.equal(
    parseKubectlClientVersion('{"clientVersion":{"major":"1","gitVersion":"v1.32.4-dispatcher"}}'),
    "v1.32.4-dispatcher",
  );
  assert.equal(parseKubectlClientVersion("error: unknown flag: --client"), null);
  assert.equal(
    parseCniAbout("CNI bridge plugin v1.9.1\nCNI protocol versions supported: 1.0.0\n"),
    "v1.9.1",
  );
  // Debian's containernetworking-plugins 1.1.1 is built without its version string.
  assert.equal(parseCniAbout("CNI bridge plugin version unknown\n"), null);
  assert.deepEqual(
    parseCniVersionInfo('{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}'),
    ["0.4.0", "1.0.0", "1.1.0"],
  );
  assert.equal(parseCniVersionInfo('{"code":4,"msg":"required env variables"}'), null);
});

test("doctor searches sandkube's install cache, and the lab's folder too when it is elsewhere", async () => {
  const facts = await probeBinaries(
    replayIO(await loadTranscript("net-host-kernel")),
    RECORDED_SEARCH_PATH,
    { ...RECORDED_CACHE_DIRS, labBinDir: "/elsewhere/lab/bin", labCniDir: "/elsewhere/lab/cni" },
  );
  assert.deepEqual(
    facts.searchedDirs.slice(RECORDED_SEARCH_PATH.length, RECORDED_SEARCH_PATH.length + 2),
    [RECORDED_LAB_DIRS.labBinDir, "/elsewhere/lab/bin"],
  );
  assert.ok(facts.cniDirs.includes(RECORDED_LAB_DIRS.labCniDir));
  assert.ok(facts.cniDirs.includes("/elsewhere/lab/cni"));
  assert.equal(found(facts.programs.containerd).path, "/var/cache/sandkube-lab/bin/containerd");
});
