import { test } from "node:test";
import assert from "node:assert/strict";
import { replayIO, type Transcript, type TranscriptEntry } from "../../src/probe/io.js";
import {
  CAPABILITY_RULES,
  parseIptablesVersion,
  parseNftVersion,
  probeIptables,
  type IptablesCapabilities,
} from "../../src/probe/iptables.js";
import type { Check } from "../../src/probe/check.js";
import { loadTranscript } from "./net-fixtures.js";

function failed(caps: IptablesCapabilities): string[] {
  return Object.entries(caps)
    .filter(([, check]) => (check as Check).result !== "yes")
    .map(([name]) => name);
}

function detailOf(check: Check): string {
  return check.result === "yes" ? "" : check.detail;
}

test("on the host kernel both backends write every rule kind and iptables defaults to nf_tables", async () => {
  const facts = await probeIptables(replayIO(await loadTranscript("net-host-kernel")));
  assert.equal(facts.defaultBackend, "nf_tables");
  assert.deepEqual(facts.tools.iptables, { found: true, version: "1.8.9", backend: "nf_tables" });
  assert.deepEqual(facts.tools.iptablesLegacy, {
    found: true,
    version: "1.8.9",
    backend: "legacy",
  });
  assert.deepEqual(facts.tools.nft, { found: true, version: "1.0.6", backend: null });
  assert.equal(facts.scratchNamespace.method, "ip-netns");
  assert.deepEqual(facts.scratchNamespace.cleanup, { result: "yes" });
  assert.equal(facts.legacy?.binary, "iptables-legacy");
  assert.equal(facts.nfTables?.binary, "iptables-nft");
  assert.deepEqual(failed(facts.legacy?.capabilities ?? ({} as IptablesCapabilities)), []);
  assert.deepEqual(failed(facts.nfTables?.capabilities ?? ({} as IptablesCapabilities)), []);
  assert.deepEqual(facts.nftables, { result: "yes" });
});

test("in current gVisor only legacy works, without MASQUERADE, conntrack, comment, addrtype or MARK", async () => {
  // Recorded inside the lab's runsc; it confirms research-findings.md's "only legacy iptables".
  const facts = await probeIptables(replayIO(await loadTranscript("net-gvisor")));
  const nftError = "iptables: Failed to initialize nft: Protocol not supported";
  assert.deepEqual(facts.tools.iptables, {
    found: true,
    version: null,
    backend: "nf_tables",
    error: nftError,
  });
  assert.equal(facts.defaultBackend, "nf_tables");
  const legacy = facts.legacy?.capabilities;
  assert.ok(legacy);
  assert.deepEqual(failed(legacy), ["masquerade", "conntrack", "comment", "addrtype", "markSet"]);
  assert.equal(
    detailOf(legacy.masquerade),
    "Warning: Extension MASQUERADE revision 0 not supported, missing kernel module?\n" +
      "iptables: Invalid argument. Run `dmesg' for more information.",
  );
  assert.equal(
    detailOf(legacy.markSet),
    "Warning: Extension MARK revision 0 not supported, missing kernel module?\n" +
      "iptables v1.8.9 (legacy): MARK target: kernel too old for --or-mark",
  );
  const nfTables = facts.nfTables?.capabilities;
  assert.ok(nfTables);
  assert.equal(failed(nfTables).length, Object.keys(CAPABILITY_RULES).length);
  assert.equal(detailOf(nfTables.nat), nftError);
  assert.equal(
    detailOf(facts.nftables),
    "mnl.c:60: Unable to initialize Netlink socket: Protocol not supported",
  );
});

test("in 2023 gVisor the rules run in unshared namespaces, and the FORWARD chain is refused", async () => {
  const facts = await probeIptables(replayIO(await loadTranscript("net-gvisor-2023")));
  assert.equal(facts.scratchNamespace.method, "unshare");
  const legacy = facts.legacy?.capabilities;
  assert.ok(legacy);
  assert.deepEqual(legacy.filter, { result: "yes" });
  assert.deepEqual(legacy.nat, { result: "yes" });
  assert.ok(failed(legacy).includes("forward"));
  assert.ok(failed(legacy).includes("dnat"));
});

/**
 * HAND-MADE from research-findings.md ("Only legacy iptables, with no MASQUERADE, conntrack/state,
 * comment or addrtype"): a sandbox whose only iptables is a legacy `iptables`, with no
 * iptables-legacy, iptables-nft or nft. The error texts are copied from net-gvisor; no such
 * machine has been recorded yet. It pins how the probe picks a driver for each backend.
 */
function legacyOnlyMachine(): Transcript {
  const ns = "skiptdeadbeef";
  const entries: TranscriptEntry[] = [];
  const run = (argv: string[], exitCode: number, stdout: string, stderr = "", failure?: string) =>
    entries.push({
      op: "run",
      argv,
      result: { exitCode, stdout, stderr, ...(failure ? { failure } : {}) },
    });
  run(["iptables", "-V"], 0, "iptables v1.8.7 (legacy)\n");
  for (const argv of [
    ["iptables-legacy", "-V"],
    ["iptables-nft", "-V"],
    ["nft", "--version"],
  ]) {
    run(argv, 127, "", "", "ENOENT");
  }
  entries.push({ op: "scratch", label: "ipt", result: ns });
  run(["ip", "netns", "add", ns], 0, "");
  run(["ip", "netns", "delete", ns], 0, "");
  const unsupported = new Set(["masquerade", "conntrack", "comment", "addrtype"]);
  for (const [name, rule] of Object.entries(CAPABILITY_RULES)) {
    const extension = name === "masquerade" ? "MASQUERADE" : name;
    run(
      ["ip", "netns", "exec", ns, "iptables", "-w", "2", ...rule],
      unsupported.has(name) ? 1 : 0,
      "",
      unsupported.has(name)
        ? `Warning: Extension ${extension} revision 0 not supported, missing kernel module?\n` +
            "iptables: Invalid argument. Run `dmesg' for more information.\n"
        : "",
    );
  }
  return {
    schema: "sandkube.transcript/v1",
    description: "hand-made legacy-only sandbox",
    entries,
  };
}

test("with only a legacy iptables, plain iptables drives legacy and nf_tables is absent", async () => {
  const facts = await probeIptables(replayIO(legacyOnlyMachine()));
  assert.equal(facts.defaultBackend, "legacy");
  assert.deepEqual(facts.tools.iptablesNft, {
    found: false,
    error: "iptables-nft: command not found (ENOENT)",
  });
  assert.equal(facts.legacy?.binary, "iptables");
  assert.equal(facts.nfTables, null);
  assert.deepEqual(facts.nftables, { result: "not-run", detail: "nft is not installed" });
  assert.deepEqual(failed(facts.legacy?.capabilities ?? ({} as IptablesCapabilities)), [
    "masquerade",
    "conntrack",
    "comment",
    "addrtype",
  ]);
});

test("iptables and nft version lines parse, and a failing nft iptables still names its backend", () => {
  assert.deepEqual(parseIptablesVersion("iptables v1.8.9 (nf_tables)\n"), {
    version: "1.8.9",
    backend: "nf_tables",
  });
  assert.deepEqual(parseIptablesVersion("iptables v1.8.9 (legacy)\n"), {
    version: "1.8.9",
    backend: "legacy",
  });
  // iptables before 1.8 prints no backend: it is legacy, but the probe does not guess.
  assert.deepEqual(parseIptablesVersion("iptables v1.6.1\n"), { version: "1.6.1", backend: null });
  assert.deepEqual(
    parseIptablesVersion("iptables: Failed to initialize nft: Protocol not supported\n"),
    { version: null, backend: "nf_tables" },
  );
  assert.equal(parseNftVersion("nftables v1.0.6 (Lester Gooch #5)\n"), "1.0.6");
});
