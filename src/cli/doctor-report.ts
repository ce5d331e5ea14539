import type { Adaptation } from "../plan/adaptations.js";
import type { Verdict } from "../plan/verdict.js";
import type { Check } from "../probe/check.js";
import type { Facts } from "../probe/facts.js";
import { renderTable } from "./table.js";
import { chooseServiceProxy } from "../node/node-config.js";

/** The versioned --json document; docs/doctor-json.md describes every field. */
export interface DoctorReport {
  readonly schema: "sandkube.doctor/v1";
  readonly facts: Facts;
  readonly adaptations: readonly Adaptation[];
  readonly verdict: Verdict;
}

function check(c: Check): string {
  switch (c.result) {
    case "yes":
      return "yes";
    case "no":
      return `no (${c.code}: ${c.detail})`;
    case "not-run":
      return `not tried: ${c.detail}`;
  }
}

function shortCheck(c: Check): string {
  return c.result === "yes" ? "yes" : c.result === "no" ? `no (${c.code})` : "not tried";
}

/** Like check(), but only the first line: ip and iptables messages can run to many lines. */
function toolCheck(c: Check): string {
  return check(c.result === "yes" ? c : { ...c, detail: c.detail.split("\n")[0] ?? "" });
}

type Row = readonly [area: string, item: string, observed: string];

/** Pure: one row per observation, grouped by area, in the order a reader checks them. */
export function foundRows(facts: Facts): Row[] {
  const rows: Row[] = [];
  const { identity, kernel } = facts;
  rows.push([
    "identity",
    "uid",
    `${identity.uid ?? "unknown"}${identity.isRoot ? " (root)" : ""}, CAP_SYS_ADMIN ${identity.hasCapSysAdmin ? "yes" : "no"}`,
  ]);
  rows.push(["kernel", "release", kernel.release ?? "unreadable"]);
  const hits = kernel.gvisor.evidence.filter((e) => e.pointsToGvisor);
  rows.push([
    "kernel",
    "gVisor",
    `${kernel.gvisor.verdict ? "yes" : "no"} (${hits.length ? hits.map((e) => `${e.id}[${e.weight}]`).join(", ") : "no signal"})`,
  ]);
  for (const s of facts.sysctls) {
    let observed: string;
    if (!s.exists) observed = "missing";
    else if (s.readable.result !== "yes") observed = `unreadable ${shortCheck(s.readable)}`;
    else
      observed = `= ${s.value ?? ""}; write-back ${s.writable.result === "yes" ? "ok" : shortCheck(s.writable)}`;
    rows.push(["/proc/sys", s.name, `${observed} [${s.consumers.join(",")} ${s.access}]`]);
  }
  rows.push([
    "devices",
    "/dev/kmsg",
    facts.devKmsg.exists ? `present (${facts.devKmsg.kind})` : `missing (${facts.devKmsg.code})`,
  ]);
  const { cgroups } = facts;
  rows.push(["cgroups", "mode", cgroups.mode]);
  rows.push([
    "cgroups",
    "kernel controllers",
    cgroups.kernelControllers.map((c) => (c.enabled ? c.name : `${c.name}(off)`)).join(" ") ||
      "none",
  ]);
  for (const h of cgroups.hierarchies) {
    rows.push([
      "cgroups",
      `${h.mountPoint} (v${h.version})`,
      `[${h.controllers.join(",")}] child ${shortCheck(h.createChild)}, move ${shortCheck(h.moveProcess)}, cleanup ${shortCheck(h.removeChild)}`,
    ]);
  }
  if (cgroups.mode === "none") {
    rows.push(["cgroups", "scratch v1 mounts", check(cgroups.scratchV1MountCheck)]);
    for (const m of cgroups.scratchV1Mounts) {
      const h = m.hierarchy;
      rows.push([
        "cgroups",
        `scratch mount -o ${m.controllers.join(",")}`,
        h === null
          ? `mount ${shortCheck(m.mount)}`
          : `mount yes, child ${shortCheck(h.createChild)}, move ${shortCheck(h.moveProcess)}, cleanup ${shortCheck(h.removeChild)}, umount ${shortCheck(m.unmount)}`,
      ]);
    }
  }
  const { overlay } = facts;
  rows.push([
    "overlayfs",
    `on ${overlay.dataDir} (${overlay.dataDirFsType ?? "?"})`,
    overlay.kernelSupports ? check(overlay.onDataDir) : "not in /proc/filesystems",
  ]);
  rows.push(["overlayfs", "with tmpfs upper", check(overlay.tmpfsUpper)]);
  rows.push(["overlayfs", "cleanup", shortCheck(overlay.cleanedUp)]);
  for (const ns of facts.namespaces) {
    rows.push([
      "namespaces",
      ns.type,
      `create ${shortCheck(ns.create)}${ns.inProc ? "" : ` (no /proc/self/ns/${ns.type})`}, join by path ${shortCheck(ns.joinByPath)}`,
    ]);
  }
  rows.push(["keyrings", "join session keyring", check(facts.keyrings.joinSessionKeyring)]);
  rows.push(["keyrings", "add key", check(facts.keyrings.addKey)]);
  const prop = facts.mountPropagation;
  rows.push([
    "mounts",
    "propagation of /",
    prop.rootOptionalFields.length
      ? `${prop.root} (${prop.rootOptionalFields.join(" ")})`
      : prop.root,
  ]);
  rows.push(["mounts", "make / private in new mnt ns", check(prop.makePrivateInNewNamespace)]);
  rows.push(["mounts", "make / shared in new mnt ns", check(prop.makeSharedInNewNamespace)]);
  const { iptables } = facts;
  rows.push(["iptables", "default backend", iptables.defaultBackend ?? "no iptables"]);
  for (const backend of [iptables.legacy, iptables.nfTables]) {
    if (backend === null) continue;
    const caps = Object.entries(backend.capabilities);
    const broken = caps.filter(([, c]) => c.result !== "yes").map(([name]) => name);
    rows.push([
      "iptables",
      backend.binary,
      broken.length === 0 ? "every rule kind works" : `fails: ${broken.join(", ")}`,
    ]);
  }
  rows.push(["iptables", "nftables netlink", toolCheck(iptables.nftables)]);
  const { network } = facts;
  for (const key of [
    "veth",
    "bridge",
    "bridgePromiscuous",
    "vethOnBridge",
    "routeViaGateway",
    "routeWithSource",
  ] as const) {
    rows.push(["network", key, toolCheck(network[key])]);
  }
  for (const [name, fact] of Object.entries(facts.binaries.programs)) {
    if (!fact.found) continue;
    rows.push([
      "binaries",
      name,
      `${fact.path} ${fact.version.result === "yes" ? fact.version.version : `(version: ${fact.version.detail.split("\n")[0]})`}`,
    ]);
  }
  const missing = Object.entries(facts.binaries.programs)
    .filter(([, f]) => !f.found)
    .map(([name]) => name);
  if (missing.length) rows.push(["binaries", "not found", missing.join(" ")]);
  for (const r of facts.registries.registries) {
    rows.push([
      "registries",
      r.name,
      r.result.reachable
        ? `reachable (HTTP ${r.result.httpStatus})`
        : `${r.result.kind}: ${r.result.error.split("\n")[0]}`,
    ]);
  }
  return rows;
}

/** Pure: which Service proxy and which egress rewrite `up` picks here, and the fact behind each. */
export function dataPathLines(adaptations: readonly Adaptation[]): string[] {
  const proxy = chooseServiceProxy("auto", adaptations);
  const noMasquerade = adaptations.find((a) => a.id === "no-ip-masq");
  return [
    `- Services: ${proxy.serviceProxy === "kube-proxy" ? "stock kube-proxy, iptables mode" : "sandkube-proxy, in user space"} (because ${proxy.because})`,
    `- Pod egress: ${noMasquerade === undefined ? "one MASQUERADE rule" : "SNAT to each uplink's address, tcp and udp"} (because ${noMasquerade?.because ?? "MASQUERADE works here"})`,
  ];
}

export function renderHuman(report: DoctorReport): string {
  const out: string[] = [];
  out.push("FOUND", "");
  out.push(renderTable(["area", "item", "observed"], foundRows(report.facts), [10, 50, 70]));
  out.push("", "WHAT IT MEANS FOR KUBERNETES", "");
  if (report.adaptations.length === 0 && report.verdict.blockers.length === 0) {
    out.push("Nothing here stops stock Kubernetes.");
  }
  for (const blocker of report.verdict.blockers)
    out.push(`- BLOCKER ${blocker.id}: ${blocker.because}`);
  for (const a of report.adaptations) out.push(`- ${a.meaning} [${a.id}]`);
  out.push("", "ADAPTATIONS SANDKUBE SWITCHES ON", "");
  out.push(
    report.adaptations.length === 0
      ? "none"
      : renderTable(
          ["adaptation", "because (fact)", "action"],
          report.adaptations.map((a) => [a.id, a.because, a.action]),
          [26, 48, 48],
        ),
  );
  out.push("", "DATA PATHS `up` WILL USE", "");
  for (const line of dataPathLines(report.adaptations)) out.push(line);
  out.push("", `VERDICT: ${report.verdict.summary}`);
  for (const blocker of report.verdict.blockers) out.push(`  ${blocker.id}: ${blocker.because}`);
  return `${out.join("\n")}\n`;
}
