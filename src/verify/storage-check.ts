/**
 * A PersistentVolumeClaim's data outlives the pod that wrote it (issue 9, storage): the writer
 * (applied with the workload) stores a token on a claim of the default StorageClass and exits; it
 * is deleted; a new reader pod reads the token back.
 */
import {
  describeCommand,
  eventMessages,
  formatPods,
  kubectl,
  kubectlSeconds,
  sleep,
  succeeded,
  summarisePod,
  timed,
  type CheckResult,
  type ClusterTarget,
  type Outcome,
  type PodSummary,
} from "./cluster.js";
import { defaultStorageClasses } from "./probes.js";
import { PVC_NAME, PVC_READER, PVC_WRITER, pvcReader, toYaml, type Workload } from "./workload.js";

const PROVISIONER_LOGS =
  "`sandkube kubectl -n local-path-storage logs deploy/local-path-provisioner`";

/** Waits until the pod has run to its end (Succeeded or Failed), at most timeoutMs. */
async function podFinished(
  target: ClusterTarget,
  name: string,
): Promise<{ pod: PodSummary | undefined; last: string }> {
  const deadline = Date.now() + target.timeoutMs;
  let last = "";
  for (;;) {
    const got = await kubectl(target, ["get", "pod", name, "-o", "json"]);
    const pod = succeeded(got) ? summarisePod(got.stdout) : undefined;
    last = pod === undefined ? describeCommand(got) : formatPods([pod]);
    if (pod !== undefined && (pod.phase === "Succeeded" || pod.phase === "Failed"))
      return { pod, last };
    if (Date.now() >= deadline) return { pod, last };
    await sleep(1000);
  }
}

/** The claim's phase, its volume and its events: what a failure is reported with. */
async function claimStory(
  target: ClusterTarget,
): Promise<{ phase: string; text: string; lastEvent: string | undefined }> {
  const claim = await kubectl(target, ["get", "pvc", PVC_NAME, "-o", "json"]);
  let phase = "unknown";
  let volume = "";
  if (succeeded(claim)) {
    const parsed = JSON.parse(claim.stdout) as {
      spec?: { volumeName?: string; storageClassName?: string };
      status?: { phase?: string };
    };
    phase = parsed.status?.phase ?? "unknown";
    volume = `, volume ${parsed.spec?.volumeName ?? "none"}, StorageClass ${parsed.spec?.storageClassName ?? "none"}`;
  }
  const events = await kubectl(target, [
    "get",
    "events",
    "--field-selector",
    `involvedObject.kind=PersistentVolumeClaim,involvedObject.name=${PVC_NAME}`,
    "-o",
    "json",
  ]);
  const messages = succeeded(events) ? eventMessages(events.stdout) : [describeCommand(events)];
  return {
    phase,
    lastEvent: messages.at(-1),
    text: `PVC ${PVC_NAME} ${phase}${volume}; its events: ${messages.length === 0 ? "none" : messages.slice(-5).join(" | ")}`,
  };
}

async function podFailure(
  target: ClusterTarget,
  role: string,
  name: string,
  last: string,
  pod: PodSummary | undefined,
): Promise<Outcome> {
  const story = await claimStory(target);
  const out = await kubectl(target, ["logs", `pod/${name}`]);
  const logs = succeeded(out) ? out.stdout.trim().split("\n").slice(-3).join(" | ") : "";
  const pending = story.phase !== "Bound";
  return {
    ok: false,
    detail: `the ${role} ${name} did not succeed: ${last}${logs ? `; its log: ${logs}` : ""}\n  ${story.text}`,
    blocker: pending
      ? `PVC ${PVC_NAME} is ${story.phase}${story.lastEvent === undefined ? "" : `: ${story.lastEvent}`}`
      : `the ${role} pod ${pod?.phase ?? "did not finish"} on the bound volume${logs ? `: ${logs}` : ""}`,
    remedy: pending
      ? `${PROVISIONER_LOGS} and \`sandkube kubectl -n ${target.namespace} describe pvc ${PVC_NAME}\``
      : `\`sandkube kubectl -n ${target.namespace} describe pod ${name}\` and ${PROVISIONER_LOGS}`,
  };
}

export function pvc(
  target: ClusterTarget,
  workload: Workload,
  options: { image?: string; uid?: number } = {},
): Promise<CheckResult> {
  return timed("pvc", async () => {
    const classes = await kubectl(target, ["get", "storageclass", "-o", "json"]);
    if (!succeeded(classes)) return { ok: false, detail: describeCommand(classes) };
    const defaults = defaultStorageClasses(classes.stdout);
    if (defaults.length === 0) {
      return {
        ok: false,
        detail: `no StorageClass is annotated storageclass.kubernetes.io/is-default-class=true`,
        blocker:
          "the cluster has no default StorageClass, so a claim without storageClassName never binds",
        remedy: `\`sandkube kubectl get storageclass\` and ${PROVISIONER_LOGS}`,
      };
    }
    const written = await podFinished(target, PVC_WRITER);
    if (written.pod?.phase !== "Succeeded") {
      return podFailure(target, "writer", PVC_WRITER, written.last, written.pod);
    }
    const del = await kubectl(
      target,
      ["delete", "pod", PVC_WRITER, "--wait=true", `--timeout=${kubectlSeconds(target.timeoutMs)}`],
      { timeoutMs: target.timeoutMs + 15_000 },
    );
    if (!succeeded(del))
      return { ok: false, detail: `could not delete the writer: ${describeCommand(del)}` };
    const applied = await kubectl(target, ["apply", "--filename", "-"], {
      input: toYaml([pvcReader(workload, options)]),
    });
    if (!succeeded(applied)) return { ok: false, detail: describeCommand(applied) };
    const read = await podFinished(target, PVC_READER);
    if (read.pod?.phase !== "Succeeded") {
      return podFailure(target, "reader", PVC_READER, read.last, read.pod);
    }
    const out = await kubectl(target, ["logs", `pod/${PVC_READER}`]);
    const story = await claimStory(target);
    if (succeeded(out) && out.stdout.trim() === workload.pvcToken) {
      return {
        ok: true,
        detail: `${PVC_READER} read back the token ${PVC_WRITER} wrote before it was deleted (${story.text.split(";")[0] ?? ""}, default StorageClass ${defaults.join(",")})`,
      };
    }
    return {
      ok: false,
      detail: `${PVC_READER} read ${JSON.stringify(out.stdout.trim().slice(0, 100))}, not the token ${JSON.stringify(workload.pvcToken)}: ${describeCommand(out)}\n  ${story.text}`,
      blocker:
        "the volume did not keep what the writer stored: the reader got a different or empty directory",
      remedy: `${PROVISIONER_LOGS} (each claim must map to one directory under the data dir)`,
    };
  });
}
