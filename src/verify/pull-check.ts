/**
 * The `pull` check (issue 10): a pod whose image the node must fetch from its registry
 * (imagePullPolicy Always), so the registry options `up --registries` wrote (hosts.toml, the CA,
 * kubelet's config.json logins) and containerd's proxy environment are all on the path. A refused
 * or unreachable registry is named by kubelet's waiting reason and its event's message.
 */
import type { V1Pod } from "@kubernetes/client-node";
import {
  describeCommand,
  eventMessages,
  kubectl,
  sleep,
  succeeded,
  timed,
  type CheckResult,
  type ClusterTarget,
  type Outcome,
} from "./cluster.js";
import { toYaml } from "./workload.js";

export const PULL_POD = "pull";
const PULL_CONTAINER = "pulled";

/** kubelet's waiting reasons that mean the image could not be had (pkg/kubelet/images/types.go). */
export const PULL_FAILURE_REASONS = [
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
  "RegistryUnavailable",
] as const;

export const PULL_BLOCKER = "the registry refused or could not be reached";
export const PULL_REMEDY =
  "give the node the registry's CA, login and proxy with `sandkube up --registries FILE` (and HTTPS_PROXY in up's environment), see docs/registries.md; `sandkube images pull REF` shows containerd's own error";

/**
 * Pure: the pod. The image's own entrypoint runs, since any image may be named; restartPolicy
 * Never, so an image whose command ends is Succeeded or Failed rather than crash-looping, either of
 * which still proves the pull.
 */
export function pullPod(namespace: string, image: string): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: PULL_POD, namespace, labels: { app: PULL_POD } },
    spec: {
      restartPolicy: "Never",
      terminationGracePeriodSeconds: 1,
      automountServiceAccountToken: false,
      containers: [{ name: PULL_CONTAINER, image, imagePullPolicy: "Always" }],
    },
  };
}

export type PullState =
  | { readonly kind: "started"; readonly state: "running" | "terminated"; readonly imageID: string }
  | { readonly kind: "refused"; readonly reason: string; readonly message: string }
  | { readonly kind: "waiting"; readonly reason: string };

interface RawPullPod {
  status?: {
    phase?: string;
    containerStatuses?: {
      imageID?: string;
      state?: {
        running?: object;
        terminated?: object;
        waiting?: { reason?: string; message?: string };
      };
    }[];
  };
}

/** Pure: `kubectl get pod pull -o json` -> whether the image came, was refused, or is on its way. */
export function pullState(podJson: string): PullState {
  const pod = JSON.parse(podJson) as RawPullPod;
  const status = pod.status?.containerStatuses?.[0];
  const state = status?.state;
  if (state?.running !== undefined || state?.terminated !== undefined) {
    return {
      kind: "started",
      state: state.running !== undefined ? "running" : "terminated",
      imageID: status?.imageID ?? "",
    };
  }
  const reason = state?.waiting?.reason ?? pod.status?.phase ?? "Pending";
  if ((PULL_FAILURE_REASONS as readonly string[]).includes(reason)) {
    return { kind: "refused", reason, message: (state?.waiting?.message ?? "").trim() };
  }
  return { kind: "waiting", reason };
}

/**
 * Pure: the event that says why, from the pod's events ("reason: message", oldest first): kubelet's
 * `Failed: Failed to pull image "REF": ...` carries containerd's error; else the last warning.
 */
export function pullEventMessage(events: readonly string[]): string | undefined {
  const pulls = events.filter((e) => /Failed to pull image/.test(e));
  return pulls.at(-1) ?? events.filter((e) => e.startsWith("Warning ")).at(-1);
}

/** Pure: the failed outcome for a pod whose image was refused. */
export function pullRefused(
  image: string,
  refused: Extract<PullState, { kind: "refused" }>,
  event: string | undefined,
): Outcome {
  const message = refused.message === "" ? "" : `: ${refused.message}`;
  return {
    ok: false,
    detail: `pod ${PULL_POD} (${image}, imagePullPolicy Always) is ${refused.reason}${message}\n  event: ${event ?? "none recorded yet"}`,
    blocker: `${PULL_BLOCKER} (${refused.reason}${event === undefined ? "" : `; ${event}`})`,
    remedy: PULL_REMEDY,
  };
}

/** Pure: the skipped outcome when no image was named. */
export function pullNotAsked(): Outcome {
  return {
    ok: false,
    skipped: true,
    detail:
      "no image to pull: give --pull-image REF (an image only the registry has) to check pulls",
  };
}

async function podEvents(target: ClusterTarget): Promise<string[]> {
  const events = await kubectl(target, [
    "get",
    "events",
    "--field-selector",
    `involvedObject.kind=Pod,involvedObject.name=${PULL_POD}`,
    "--sort-by",
    ".metadata.creationTimestamp",
    "--output",
    "json",
  ]);
  return succeeded(events) ? eventMessages(events.stdout) : [describeCommand(events)];
}

/**
 * Runs the pull pod in the target's namespace until its container starts (pass) or kubelet gives
 * up on the image (fail, with the waiting reason and the pull event), at most target.timeoutMs.
 */
export function pull(target: ClusterTarget, image: string | undefined): Promise<CheckResult> {
  return timed("pull", async () => {
    if (image === undefined) return pullNotAsked();
    const applied = await kubectl(target, ["apply", "--filename", "-"], {
      input: toYaml([pullPod(target.namespace, image)]),
    });
    if (!succeeded(applied)) return { ok: false, detail: describeCommand(applied) };
    const deadline = Date.now() + target.timeoutMs;
    let last = "no status yet";
    for (;;) {
      const got = await kubectl(target, ["get", "pod", PULL_POD, "--output", "json"]);
      const state = succeeded(got) ? pullState(got.stdout) : undefined;
      if (state?.kind === "started") {
        return {
          ok: true,
          detail: `pod ${PULL_POD} pulled ${image} (imagePullPolicy Always, ${state.imageID}) and is ${state.state === "running" ? "Running" : "done running"}`,
        };
      }
      if (state?.kind === "refused") {
        // The event is written a moment after the status; wait for it, but not past the deadline.
        const eventDeadline = Math.min(deadline, Date.now() + 10_000);
        let event = pullEventMessage(await podEvents(target));
        while (event === undefined && Date.now() < eventDeadline) {
          await sleep(1000);
          event = pullEventMessage(await podEvents(target));
        }
        return pullRefused(image, state, event);
      }
      last = state === undefined ? describeCommand(got) : state.reason;
      if (Date.now() >= deadline) {
        const events = await podEvents(target);
        return {
          ok: false,
          detail: `pod ${PULL_POD} (${image}) did not start within ${String(Math.round(target.timeoutMs / 1000))}s (${last}); events: ${events.slice(-5).join(" | ") || "none"}`,
          blocker: `${PULL_BLOCKER} (the pull did not finish in time)`,
          remedy: PULL_REMEDY,
        };
      }
      await sleep(1000);
    }
  });
}
