import assert from "node:assert/strict";
import { test } from "node:test";
import type { CommandResult, CommandRunner } from "../../src/common/exec.js";
import { parseVerifyArgs } from "../../src/cli/verify.js";
import { OPTIONAL_CHECKS } from "../../src/verify/checks.js";
import {
  PULL_BLOCKER,
  PULL_POD,
  pull,
  pullEventMessage,
  pullPod,
  pullRefused,
  pullState,
} from "../../src/verify/pull-check.js";

const REF = "registry.sandkube.test:5443/demo/layered:1";
/** containerd 2.4.2's CRI error for a wrong password, as kubelet 1.34 puts it in the status. */
const REFUSED = `failed to pull and unpack image "${REF}": failed to resolve image: unexpected status from HEAD request to https://registry.sandkube.test:5443/v2/demo/layered/manifests/1: 401 Unauthorized`;

function podJson(state: object, imageID = ""): string {
  return JSON.stringify({
    metadata: { name: PULL_POD },
    status: { phase: "Pending", containerStatuses: [{ name: "pulled", imageID, state }] },
  });
}

test("the pull pod always pulls, runs the image's own command once and goes quickly", () => {
  const pod = pullPod("sandkube-verify-x", REF);
  const container = pod.spec?.containers[0];
  assert.equal(container?.image, REF);
  assert.equal(container?.imagePullPolicy, "Always");
  assert.equal(container?.command, undefined, "any image may be named: its entrypoint runs");
  assert.equal(pod.spec?.restartPolicy, "Never");
  assert.equal(pod.metadata?.namespace, "sandkube-verify-x");
});

test("pullState: started, refused with kubelet's reason and message, or still on its way", () => {
  assert.deepEqual(pullState(podJson({ running: { startedAt: "x" } }, "sha256:ab")), {
    kind: "started",
    state: "running",
    imageID: "sha256:ab",
  });
  assert.equal(
    pullState(podJson({ terminated: { exitCode: 0 } })).kind,
    "started",
    "an image whose command ends was still pulled",
  );
  assert.deepEqual(pullState(podJson({ waiting: { reason: "ErrImagePull", message: REFUSED } })), {
    kind: "refused",
    reason: "ErrImagePull",
    message: REFUSED,
  });
  assert.equal(
    pullState(podJson({ waiting: { reason: "ImagePullBackOff", message: "Back-off" } })).kind,
    "refused",
  );
  assert.deepEqual(pullState(podJson({ waiting: { reason: "ContainerCreating" } })), {
    kind: "waiting",
    reason: "ContainerCreating",
  });
  assert.deepEqual(pullState(JSON.stringify({ status: { phase: "Pending" } })), {
    kind: "waiting",
    reason: "Pending",
  });
});

test("the pull event is kubelet's Failed to pull image, else the last warning", () => {
  const events = [
    `Normal Scheduled: Successfully assigned x/pull to node`,
    `Normal Pulling: Pulling image "${REF}"`,
    `Warning Failed: Failed to pull image "${REF}": ${REFUSED}`,
    `Warning Failed: Error: ErrImagePull`,
    `Warning Failed: Error: ImagePullBackOff`,
  ];
  assert.equal(pullEventMessage(events), events[2]);
  assert.equal(pullEventMessage(events.slice(0, 2)), undefined);
  assert.equal(pullEventMessage([...events.slice(0, 2), events[3] ?? ""]), events[3]);
});

test("a refused pull names the reason, the event, the blocker and the remedy", () => {
  const event = `Warning Failed: Failed to pull image "${REF}": ${REFUSED}`;
  const out = pullRefused(
    REF,
    { kind: "refused", reason: "ErrImagePull", message: REFUSED },
    event,
  );
  assert.equal(out.ok, false);
  assert.match(out.detail, /is ErrImagePull: .*401 Unauthorized/);
  assert.ok(out.blocker?.startsWith(`${PULL_BLOCKER} (ErrImagePull; Warning Failed:`));
  assert.match(out.remedy ?? "", /sandkube up --registries FILE/);
  assert.match(out.remedy ?? "", /docs\/registries\.md/);
});

/** Scripted kubectl answers: the unit tier has no cluster; the gVisor scenario runs the real one. */
function scripted(answers: Record<string, string[]>): {
  run: CommandRunner;
  calls: string[][];
} {
  const calls: string[][] = [];
  const run: CommandRunner = (argv) => {
    calls.push([...argv]);
    const verb = argv.slice(argv.indexOf("--namespace") + 2).join(" ");
    const key = Object.keys(answers).find((k) => verb.startsWith(k));
    const queue = key === undefined ? [] : (answers[key] ?? []);
    const stdout = queue.length > 1 ? (queue.shift() ?? "") : (queue[0] ?? "");
    const result: CommandResult = {
      argv,
      exitCode: key === undefined ? 1 : 0,
      stdout,
      stderr: "",
    };
    return Promise.resolve(result);
  };
  return { run, calls };
}

const target = (run: CommandRunner) => ({
  kubectl: "kubectl",
  kubeconfig: "/kc",
  namespace: "ns",
  timeoutMs: 20_000,
  run,
});

test("pull: skipped with the reason when no image is named, and runs nothing", async () => {
  const { run, calls } = scripted({});
  const result = await pull(target(run), undefined);
  assert.equal(result.status, "skipped");
  assert.match(result.detail, /--pull-image REF/);
  assert.equal(calls.length, 0);
});

test("pull: ok once the container runs; failed with the event when refused", async () => {
  const good = scripted({
    apply: ["pod/pull created"],
    "get pod": [
      podJson({ waiting: { reason: "ContainerCreating" } }),
      podJson({ running: {} }, "sha256:ab"),
    ],
  });
  const ok = await pull(target(good.run), REF);
  assert.equal(ok.status, "ok", ok.detail);
  assert.match(ok.detail, /pulled .*sha256:ab.*Running/);
  const apply = good.calls[0] ?? [];
  assert.ok(apply.includes("apply"));

  const event = {
    type: "Warning",
    reason: "Failed",
    message: `Failed to pull image "${REF}": ${REFUSED}`,
  };
  const bad = scripted({
    apply: ["pod/pull created"],
    "get pod": [podJson({ waiting: { reason: "ErrImagePull", message: REFUSED } })],
    "get events": [JSON.stringify({ items: [event] })],
  });
  const refused = await pull(target(bad.run), REF);
  assert.equal(refused.status, "failed");
  assert.match(refused.blocker ?? "", /refused or could not be reached \(ErrImagePull; .*401/);
  assert.match(refused.detail, /event: Warning Failed: Failed to pull image/);
});

test("verify --pull-image adds pull to the default checks; --checks pull alone is allowed", () => {
  const env = { SANDKUBE_DATA_DIR: "/var/lib/sk-test" };
  assert.deepEqual(parseVerifyArgs([], env).checks, OPTIONAL_CHECKS, "no pull by default");
  const withImage = parseVerifyArgs(["--pull-image", REF], env);
  assert.deepEqual(withImage.checks, [...OPTIONAL_CHECKS, "pull"]);
  assert.equal(withImage.pullImage, REF);
  const only = parseVerifyArgs(["--checks", "pull"], env);
  assert.deepEqual(only.checks, ["pull"]);
  assert.equal(only.pullImage, undefined, "then the check is skipped, saying why");
  assert.throws(() => parseVerifyArgs(["--pull-image", "has space"], env), /--pull-image takes/);
});
