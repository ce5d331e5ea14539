import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runCommand, type CommandResult } from "../../src/common/exec.js";
import { nodeLayout } from "../../src/node/layout.js";
import { sleep } from "../../src/node/process-identity.js";
import { readNodeState } from "../../src/node/state.js";
import { registryHostsDir } from "../../src/plan/containerd-config.js";
import { isRegistryProcess, registryPaths, writeHtpasswd } from "../../src/registry/local.js";
import { issueRegistryTls } from "../../src/registry/tls.js";
import { makeWhiteoutLayers } from "../host/images-layers-fixture.js";
import { leftoversOf, snapshotMachine } from "./node-scenario.js";
import { brief, must, runScenarioProgram, Scenario, type ScenarioReport } from "./scenario.js";
import { freeLoopbackPort } from "../../src/common/net.js";

/**
 * Issue 10's registry test on a real node, as one program: the host test runs it directly and the
 * gVisor test runs the same file inside runsc. Debian's docker-registry on loopback, started and
 * stopped by `sandkube registry`, with TLS from a CA made here and an htpasswd login, reached by the node only through an HTTP CONNECT proxy on
 * loopback (its name, registry.sandkube.test, resolves nowhere else); `sandkube up --registries`
 * with HTTPS_PROXY in up's environment; a 3-layer image whose top layer deletes a file of the
 * lowest, pushed there and removed from the node, so a pod must pull it; `sandkube verify
 * --checks pull`; then the password rotated on the registry, so the node's login is wrong: the
 * pod's ErrImagePull event and verify name the 401. It prints one JSON object (ScenarioReport).
 *
 *   node dist/test/e2e/registry-scenario.js --data-dir DIR [--out FILE]
 */

const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
/** A name nothing resolves; only the scenario's proxy knows it means 127.0.0.1. */
export const REGISTRY_NAME = "registry.sandkube.test";
const USER = "alice";
const PASSWORD = "correct horse: battery";
const ROTATED = "staple: rotated";
/** The layered image's command keeps it running, so the pull pods of verify stay Running. */
const IMAGE_CMD = '["/bin/sh","-c","while :; do sleep 1; done"]';
/** What the top two layers did to the lowest one (test/host/images-layers-fixture.ts). */
const EXPECTED_FILES: Record<string, boolean> = {
  "/data/a": false,
  "/data/b": true,
  "/data/c": true,
  "/etc/keep": true,
  "/opt/x/old": false,
  "/opt/x/sub": false,
  "/opt/x/new": true,
  "/bin/busybox": true,
};

function sandkube(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
  timeoutMs = 600_000,
): Promise<CommandResult> {
  return runCommand([process.execPath, CLI, ...args], { timeoutMs, env });
}

/** The smallest honest HTTP CONNECT proxy: knows REGISTRY_NAME, refuses and records the rest. */
export interface ConnectProxy {
  readonly url: string;
  /** host:port of every CONNECT it tunnelled. */
  readonly tunnels: string[];
  /** host:port of every CONNECT it refused (anything but REGISTRY_NAME). */
  readonly refused: string[];
  close(): Promise<void>;
}

export async function startConnectProxy(registryPort: number): Promise<ConnectProxy> {
  const tunnels: string[] = [];
  const refused: string[] = [];
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  const server = http.createServer((_request, response) => {
    response.writeHead(405);
    response.end();
  });
  server.on("connect", (request: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const authority = request.url ?? "";
    // A refused client may reset its socket before reading the 403; that is no error of ours.
    client.on("error", () => client.destroy());
    track(client);
    if (authority !== `${REGISTRY_NAME}:${String(registryPort)}`) {
      refused.push(authority);
      client.end("HTTP/1.1 403 Forbidden\r\n\r\n");
      return;
    }
    tunnels.push(authority);
    const upstream = net.connect(registryPort, "127.0.0.1", () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    track(upstream);
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${String(port)}`,
    tunnels,
    refused,
    close: async () => {
      // A tunnel's sockets leave the HTTP server's own bookkeeping (closeAllConnections misses
      // them), and in runsc server.close()'s callback was then never called: Node exited with the
      // scenario's promise pending. So each socket is ended here, and the wait is bounded.
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await Promise.race([
        new Promise((done) => server.close(done)),
        new Promise((done) => setTimeout(done, 5000)),
      ]);
    },
  };
}

/** The status of GET /v2/ with this password, over TLS verified against the CA. */
function registryStatus(port: number, caPem: string, password: string): Promise<number> {
  return new Promise((done, fail) => {
    https
      .get(
        `https://127.0.0.1:${String(port)}/v2/`,
        { ca: caPem, auth: `${USER}:${password}`, servername: REGISTRY_NAME },
        (response) => {
          response.resume();
          done(response.statusCode ?? 0);
        },
      )
      .on("error", fail);
  });
}

function dockerConfig(host: string, password: string): string {
  const auth = Buffer.from(`${USER}:${password}`).toString("base64");
  return `${JSON.stringify({ auths: { [host]: { auth } } }, null, 2)}\n`;
}

function podManifest(name: string, image: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default" },
    spec: {
      terminationGracePeriodSeconds: 1,
      restartPolicy: "Never",
      containers: [
        {
          name: "layered",
          image,
          imagePullPolicy: "Always",
          command: ["/bin/sh", "-c", "while :; do sleep 1; done"],
        },
      ],
    },
  });
}

interface PodStatus {
  status?: {
    phase?: string;
    containerStatuses?: {
      imageID?: string;
      state?: { waiting?: { reason?: string; message?: string }; running?: object };
    }[];
  };
}

interface VerifyJson {
  checks: { id: string; status: string; detail: string; blocker: string | null }[];
}

export async function runRegistryScenario(dataDir: string): Promise<ScenarioReport> {
  const s = new Scenario();
  const layout = nodeLayout(dataDir);
  const scratch = await mkdtemp(join(tmpdir(), "sk-registry-node-"));
  const regDir = join(scratch, "registry");
  const userKubeconfig = join(scratch, "kubeconfig");
  const baseline = await snapshotMachine();
  let registryRunning = false;
  let proxy: ConnectProxy | undefined;
  let port = 0;
  let caPem = "";
  let host = "";
  let ref = "";
  let kubectl = "";
  let admin = "";
  let ctr = "";
  const kube: Kube = (args, timeoutMs = 60_000, input) =>
    runCommand([kubectl, "--kubeconfig", admin, ...args], {
      timeoutMs,
      ...(input === undefined ? {} : { input }),
    });
  // The registry is started and stopped by sandkube's own command, as a user would.
  const startRegistry = async (): Promise<void> => {
    must(
      await sandkube([
        "registry",
        "start",
        "--dir",
        regDir,
        "--address",
        `127.0.0.1:${String(port)}`,
        "--tls-cert",
        join(regDir, "cert.pem"),
        "--tls-key",
        join(regDir, "key.pem"),
        "--htpasswd",
        join(regDir, "htpasswd"),
      ]),
      "sandkube registry start",
    );
    registryRunning = true;
  };
  const stopRegistry = async (): Promise<void> => {
    if (!registryRunning) return;
    must(await sandkube(["registry", "stop", "--dir", regDir]), "sandkube registry stop");
    registryRunning = false;
  };
  try {
    const ready = await s.step("registry", async () => {
      port = await freeLoopbackPort();
      host = `${REGISTRY_NAME}:${String(port)}`;
      ref = `${host}/demo/layered:1`;
      await mkdir(regDir, { recursive: true });
      const tls = await issueRegistryTls({ dnsNames: [REGISTRY_NAME], ipAddresses: ["127.0.0.1"] });
      caPem = tls.caPem;
      await writeFile(join(scratch, "ca.pem"), tls.caPem);
      await writeFile(join(regDir, "cert.pem"), tls.certPem);
      await writeFile(join(regDir, "key.pem"), tls.keyPem, { mode: 0o600 });
      await writeHtpasswd(join(regDir, "htpasswd"), [{ username: USER, password: PASSWORD }]);
      await startRegistry();
      const right = await registryStatus(port, caPem, PASSWORD);
      const wrong = await registryStatus(port, caPem, "not it");
      if (right !== 200 || wrong !== 401)
        throw new Error(
          `/v2/ answered ${String(right)} to the login, ${String(wrong)} to a wrong one`,
        );
      return `sandkube registry start: docker-registry on https://127.0.0.1:${String(port)} (TLS for ${REGISTRY_NAME}, htpasswd ${USER}); /v2/ 200 with the login, 401 without`;
    });
    const proxied =
      ready &&
      (await s.step("proxy", async () => {
        proxy = await startConnectProxy(port);
        return `CONNECT proxy on ${proxy.url}, the only way to ${host}`;
      }));
    const upOk =
      proxied &&
      (await s.step("up", async () => {
        const credentials = join(scratch, "registry-auth.json");
        await writeFile(credentials, dockerConfig(host, PASSWORD), { mode: 0o600 });
        const registries = join(scratch, "registries.yaml");
        await writeFile(
          registries,
          `registries:\n  - host: ${host}\n    ca: ${join(scratch, "ca.pem")}\n    credentialsFile: ${credentials}\n`,
        );
        const result = await sandkube(
          [
            "up",
            "--data-dir",
            dataDir,
            "--registries",
            registries,
            "--no-addons",
            "--kubeconfig",
            userKubeconfig,
            "--json",
          ],
          { HTTPS_PROXY: proxy?.url ?? "" },
        );
        const refused = [...new Set(proxy?.refused ?? [])];
        if (result.exitCode !== 0 && refused.length > 0)
          throw new Error(
            `${brief(result)}; the proxy was asked for (and refused) ${refused.join(", ")}`,
          );
        must(result, "sandkube up");
        const state = await readNodeState(layout);
        if (state === undefined) throw new Error("no node state after up");
        kubectl = state.config.binaries.kubectl;
        admin = state.kubeconfig.admin;
        ctr = state.config.binaries.ctr;
        const hostsToml = join(registryHostsDir(layout), host, "hosts.toml");
        const toml = await readFile(hostsToml, "utf8");
        if (!toml.includes(`server = "https://${host}"`) || !toml.includes("ca = "))
          throw new Error(`${hostsToml} lacks the server or the CA: ${toml}`);
        if (!existsSync(join(layout.kubeletRoot, "config.json")))
          throw new Error("kubelet's config.json with the login was not written");
        return `node up with ${hostsToml} and kubelet/config.json; HTTPS_PROXY=${proxy?.url ?? ""} in up's environment; the proxy refused ${refused.length === 0 ? "nothing" : refused.join(", ")}`;
      }));
    if (upOk) {
      const pushed = await s.step("image-build-push", async () => {
        const layers = await makeWhiteoutLayers(join(scratch, "layers"));
        const built = await sandkube([
          "images",
          "build",
          "--from-dir",
          layers.base,
          "--from-dir",
          layers.middle,
          "--from-dir",
          layers.top,
          "--name",
          ref,
          "--cmd",
          IMAGE_CMD,
          "--data-dir",
          dataDir,
          "--json",
        ]);
        const image = JSON.parse(must(built, "images build")) as { layers: unknown[] };
        if (image.layers.length !== 3)
          throw new Error(`built ${String(image.layers.length)} layers, not 3`);
        const push = await sandkube([
          "images",
          "push",
          ref,
          "--credentials",
          join(scratch, "registry-auth.json"),
          "--data-dir",
          dataDir,
        ]);
        must(push, "images push");
        if (!proxy?.tunnels.includes(host))
          throw new Error(
            `the push did not go through the proxy: ${proxy?.tunnels.join(", ") ?? ""}`,
          );
        const removed = await runCommand(
          [
            ctr,
            "--address",
            layout.containerdSocket,
            "-n",
            "k8s.io",
            "images",
            "rm",
            "--sync",
            ref,
          ],
          { timeoutMs: 60_000 },
        );
        must(removed, "ctr images rm");
        const listed = await sandkube(["images", "ls", "--data-dir", dataDir]);
        if (must(listed, "images ls").includes(ref))
          throw new Error(`${ref} is still in the node after ctr images rm`);
        return `3 layers built, ${push.stdout.trim()} through the proxy, then removed from the node`;
      });
      if (pushed) await podPulls(s, kube, ref, host, () => proxy);
      if (pushed) {
        await s.step("verify-pull", async () => {
          const result = await sandkube([
            "verify",
            "--data-dir",
            dataDir,
            "--checks",
            "pull",
            "--pull-image",
            ref,
            "--timeout",
            "150",
            "--json",
          ]);
          const report = JSON.parse(result.stdout) as VerifyJson;
          const check = report.checks.find((c) => c.id === "pull");
          if (result.exitCode !== 0 || check?.status !== "ok")
            throw new Error(
              `verify exit ${String(result.exitCode)}: ${JSON.stringify(check)}; ${brief(result)}`,
            );
          return check.detail;
        });
        const rotated = await s.step("password-rotated", async () => {
          await stopRegistry();
          await writeHtpasswd(join(regDir, "htpasswd"), [{ username: USER, password: ROTATED }]);
          await startRegistry();
          const old = await registryStatus(port, caPem, PASSWORD);
          const now = await registryStatus(port, caPem, ROTATED);
          if (old !== 401 || now !== 200)
            throw new Error(
              `after rotation /v2/ gave ${String(old)} to the old password, ${String(now)} to the new`,
            );
          return "registry restarted with a new password: the node's login now gets 401";
        });
        if (rotated) {
          await wrongPasswordPod(s, kube, ref);
          await s.step("verify-names-401", async () => {
            const result = await sandkube([
              "verify",
              "--data-dir",
              dataDir,
              "--checks",
              "pull",
              "--pull-image",
              ref,
              "--timeout",
              "150",
              "--json",
            ]);
            const report = JSON.parse(result.stdout) as VerifyJson;
            const check = report.checks.find((c) => c.id === "pull");
            const text = `${check?.blocker ?? ""} ${check?.detail ?? ""}`;
            if (
              result.exitCode !== 1 ||
              check?.status !== "failed" ||
              !/ErrImagePull|ImagePullBackOff/.test(check.blocker ?? "") ||
              !/401 Unauthorized/.test(text) ||
              !/the registry refused or could not be reached/.test(check.blocker ?? "")
            )
              throw new Error(`verify exit ${String(result.exitCode)}: ${JSON.stringify(check)}`);
            if (text.includes(PASSWORD) || text.includes(ROTATED))
              throw new Error("a password leaked into verify's report");
            return `exit 1; blocker: ${check.blocker ?? ""}`;
          });
        }
      }
    }
  } finally {
    await s.step("down", async () => {
      const result = await sandkube(["down", "--data-dir", dataDir, "--purge"]);
      await stopRegistry();
      await proxy?.close();
      must(result, "sandkube down --purge");
      const left = await leftoversOf(dataDir, baseline);
      const config = registryPaths(regDir).config;
      for (const pid of (await readdir("/proc")).filter((entry) => /^\d+$/.test(entry))) {
        if (await isRegistryProcess(Number(pid), config)) left.push(`docker-registry ${pid}`);
      }
      if (existsSync(join(regDir, "registry.json"))) left.push("registry.json still recorded");
      const gone = await stat(dataDir).then(
        () => false,
        () => true,
      );
      if (!gone) left.push(`${dataDir} still exists`);
      if (left.length > 0) throw new Error(`left behind: ${left.join("; ")}`);
      return "node purged, registry and proxy stopped, nothing left";
    });
    await rm(scratch, { recursive: true, force: true });
  }
  return s.report();
}

/** kubectl with the node's admin kubeconfig. */
type Kube = (args: readonly string[], timeoutMs?: number, input?: string) => Promise<CommandResult>;

async function podStatus(kube: Kube, name: string): Promise<PodStatus> {
  return JSON.parse(
    must(await kube(["get", "pod", name, "-o", "json"]), `get pod ${name}`),
  ) as PodStatus;
}

/** The pod pulls the image only the registry has, through the proxy, and sees the whiteouts. */
async function podPulls(
  s: Scenario,
  kube: Kube,
  ref: string,
  host: string,
  proxy: () => ConnectProxy | undefined,
): Promise<void> {
  const tunnelsBefore = proxy()?.tunnels.length ?? 0;
  const running = await s.step("pod-pulls", async () => {
    must(
      await kube(["apply", "-f", "-"], 60_000, podManifest("layered", ref)),
      "apply pod layered",
    );
    const waited = await kube(
      ["wait", "--for=condition=Ready", "pod/layered", "--timeout=180s"],
      200_000,
    );
    if (waited.exitCode !== 0) {
      const pod = await podStatus(kube, "layered").catch(() => undefined);
      throw new Error(
        `pod not Ready: ${JSON.stringify(pod?.status?.containerStatuses)}; ${brief(waited)}`,
      );
    }
    const pod = await podStatus(kube, "layered");
    const events = must(
      await kube(["get", "events", "--field-selector", "involvedObject.name=layered"]),
      "events",
    );
    if (!/Successfully pulled image/.test(events))
      throw new Error(`no "Successfully pulled image" event: ${events}`);
    const through = (proxy()?.tunnels.length ?? 0) - tunnelsBefore;
    if (through < 1) throw new Error(`the pull made no CONNECT to ${host} through the proxy`);
    return `Running, ${pod.status?.containerStatuses?.[0]?.imageID ?? "?"}; ${String(through)} CONNECT ${host} seen by the proxy`;
  });
  if (!running) return;
  await s.step("pod-sees-whiteouts", async () => {
    const script = Object.keys(EXPECTED_FILES)
      .map((p) => `if [ -e ${p} ]; then echo "${p} present"; else echo "${p} absent"; fi`)
      .join("; ");
    const out = must(await kube(["exec", "layered", "--", "sh", "-c", script]), "kubectl exec");
    const wrong = Object.entries(EXPECTED_FILES)
      .map(([p, present]) => `${p} ${present ? "present" : "absent"}`)
      .filter((line) => !out.split("\n").includes(line));
    if (wrong.length > 0)
      throw new Error(`expected ${wrong.join(", ")}; got ${out.trim().split("\n").join(", ")}`);
    must(
      await kube(["delete", "pod", "layered", "--wait=true", "--timeout=60s"], 70_000),
      "delete pod",
    );
    return "/data/a and /opt/x/old gone (whiteout, opaque dir), /data/b, /data/c, /opt/x/new, /etc/keep present";
  });
}

/** A new pod after the password changed: kubelet's ErrImagePull and its event name the 401. */
async function wrongPasswordPod(s: Scenario, kube: Kube, ref: string): Promise<void> {
  await s.step("wrong-password-errimagepull", async () => {
    must(
      await kube(["apply", "-f", "-"], 60_000, podManifest("refused", ref)),
      "apply pod refused",
    );
    const deadline = Date.now() + 120_000;
    let reason = "";
    let message = "";
    while (Date.now() < deadline) {
      const waiting = (await podStatus(kube, "refused")).status?.containerStatuses?.[0]?.state
        ?.waiting;
      reason = waiting?.reason ?? "";
      message = waiting?.message ?? "";
      if (reason === "ErrImagePull" || reason === "ImagePullBackOff") break;
      await sleep(1000);
    }
    let event = "";
    while (Date.now() < deadline && event === "") {
      const events = must(
        await kube([
          "get",
          "events",
          "--field-selector",
          "involvedObject.name=refused,reason=Failed",
          "-o",
          'jsonpath={range .items[*]}{.message}{"\\n"}{end}',
        ]),
        "events",
      );
      event = events.split("\n").find((l) => /Failed to pull image/.test(l)) ?? "";
      if (event === "") await sleep(1000);
    }
    if (!/^(ErrImagePull|ImagePullBackOff)$/.test(reason))
      throw new Error(`pod refused is "${reason}", not ErrImagePull`);
    if (!/401 Unauthorized/.test(event))
      throw new Error(
        `the Failed event does not say 401 Unauthorized: "${event}" (status: ${message})`,
      );
    must(
      await kube(["delete", "pod", "refused", "--wait=true", "--timeout=60s"], 70_000),
      "delete pod",
    );
    return `${reason}; event: ${event}`;
  });
}

runScenarioProgram(import.meta.url, "registry-scenario", (flag) =>
  runRegistryScenario(resolve(flag("--data-dir") ?? "/var/lib/sandkube-registry-e2e")),
);
