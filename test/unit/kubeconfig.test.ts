import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { lstat, mkdir, readFile, readlink, rm, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "yaml";
import { ensureSuccess, runCommand } from "../../src/common/exec.js";
import { UsageError } from "../../src/cli/usage-error.js";
import {
  KubeconfigLockedError,
  adminKubeconfigEntries,
  apiServerUrl,
  currentEntries,
  mergeIntoUserKubeconfig,
  removeFromUserKubeconfig,
  renderKubeconfig,
  resolveKubeconfigTarget,
  writeComponentKubeconfigs,
  type KubeconfigEntries,
} from "../../src/node/kubeconfig.js";
import { nodeLayout } from "../../src/node/layout.js";
import { ensurePki } from "../../src/node/pki.js";
import { kubeconfigFiles, pkiFiles } from "../../src/plan/pki-files.js";
import { hasOpenssl, pkiTestConfig, temporaryDir } from "./pki-fixture.js";

const KUBECTL = "/usr/bin/kubectl";

interface NamedEntry {
  name: string;
  [key: string]: unknown;
}
interface ParsedKubeconfig {
  clusters: NamedEntry[];
  users: NamedEntry[];
  contexts: NamedEntry[];
  "current-context": string;
  [key: string]: unknown;
}

async function readKubeconfig(path: string): Promise<ParsedKubeconfig> {
  return parse(await readFile(path, "utf8")) as ParsedKubeconfig;
}

function decode(value: unknown): string {
  return Buffer.from(String(value), "base64").toString("utf8");
}

function names(list: readonly NamedEntry[]): string[] {
  return list.map((entry) => entry.name);
}

const ENTRIES: KubeconfigEntries = {
  cluster: {
    server: "https://127.0.0.1:6443",
    "certificate-authority-data": Buffer.from("not a real CA").toString("base64"),
  },
  user: { "client-certificate-data": "Y2VydA==", "client-key-data": "a2V5" },
};

/** A kubeconfig another tool (kubectl, kind) wrote, with a comment and fields sandkube ignores. */
const OTHER_KUBECONFIG = `# managed by hand
apiVersion: v1
kind: Config
clusters:
  - name: prod
    cluster:
      server: https://prod.example:6443
      insecure-skip-tls-verify: false
contexts:
  - name: prod
    context:
      cluster: prod
      user: alice
      namespace: web
current-context: prod
preferences:
  colors: true
users:
  - name: alice
    user:
      token: abc
extensions:
  - name: my-extension
    extension:
      foo: bar
`;

/** Runs the real kubectl on `path`, proving a stock client accepts what we wrote. */
async function kubectlView(path: string): Promise<ParsedKubeconfig> {
  const result = ensureSuccess(
    await runCommand([KUBECTL, "config", "view", "--kubeconfig", path, "-o", "json"]),
  );
  return JSON.parse(result.stdout) as ParsedKubeconfig;
}

test("apiServerUrl: loopback for wildcard and loopback binds, the address otherwise", () => {
  const url = (apiServerBindAddress: string, apiServerPort = 6443) =>
    apiServerUrl(pkiTestConfig("/d", { apiServerBindAddress, apiServerPort }));
  assert.equal(url("0.0.0.0"), "https://127.0.0.1:6443");
  assert.equal(url("::"), "https://127.0.0.1:6443");
  assert.equal(url("127.0.0.1", 16443), "https://127.0.0.1:16443");
  assert.equal(url("10.244.0.1"), "https://10.244.0.1:6443");
  assert.equal(url("fd00::1"), "https://[fd00::1]:6443");
});

test("renderKubeconfig embeds the data and names one current context", async (t) => {
  const text = renderKubeconfig({
    clusterName: "sandkube",
    server: "https://127.0.0.1:6443",
    caPem: "CA PEM\n",
    user: "kubernetes-admin",
    certPem: "CERT PEM\n",
    keyPem: "KEY PEM\n",
    context: "sandkube",
  });
  const config = parse(text) as ParsedKubeconfig;
  assert.equal(config["current-context"], "sandkube");
  assert.deepEqual(config.contexts, [
    { name: "sandkube", context: { cluster: "sandkube", user: "kubernetes-admin" } },
  ]);
  assert.deepEqual(currentEntries(text), {
    cluster: {
      "certificate-authority-data": Buffer.from("CA PEM\n").toString("base64"),
      server: "https://127.0.0.1:6443",
    },
    user: {
      "client-certificate-data": Buffer.from("CERT PEM\n").toString("base64"),
      "client-key-data": Buffer.from("KEY PEM\n").toString("base64"),
    },
  });
  if (!existsSync(KUBECTL)) return t.skip(`SKIPPED kubectl check: ${KUBECTL} is missing`);
  const dir = await temporaryDir(t, "kubeconfig");
  await writeFile(join(dir, "config"), text);
  const viewed = await kubectlView(join(dir, "config"));
  assert.equal(viewed["current-context"], "sandkube");
  assert.deepEqual(names(viewed.users), ["kubernetes-admin"]);
});

test("component kubeconfigs: signed by the cluster CA, right identities, kept when still right", async (t) => {
  if (!(await hasOpenssl())) return t.skip("SKIPPED: the openssl CLI is not installed");
  const layout = nodeLayout(await temporaryDir(t, "kubeconfig"));
  const config = pkiTestConfig(layout.dataDir);
  await ensurePki(config, layout);
  const first = await writeComponentKubeconfigs(config, layout);
  assert.equal(first.written.length, 5);
  const files = kubeconfigFiles(layout);
  const expectedSubjects = {
    admin: "O = system:masters, CN = kubernetes-admin",
    kubelet: "O = system:nodes, CN = system:node:sandkube-test",
    controllerManager: "CN = system:kube-controller-manager",
    scheduler: "CN = system:kube-scheduler",
    kubeProxy: "CN = system:kube-proxy",
  };
  for (const [name, path] of Object.entries(files)) {
    assert.equal((await stat(path)).mode & 0o777, 0o600, `${name} mode`);
    const entries = currentEntries(await readFile(path, "utf8"));
    assert.ok(entries, `${name} has a current context`);
    assert.equal(entries.cluster["server"], "https://10.244.0.1:6443");
    const certPath = join(layout.dataDir, `${name}.crt`);
    await writeFile(
      certPath,
      Buffer.from(String(entries.user["client-certificate-data"]), "base64"),
    );
    const verify = await runCommand([
      "openssl",
      "verify",
      "-CAfile",
      pkiFiles(layout).caCert,
      certPath,
    ]);
    assert.equal(verify.exitCode, 0, `${name}: ${verify.stdout}${verify.stderr}`);
    const subject = ensureSuccess(
      await runCommand(["openssl", "x509", "-in", certPath, "-noout", "-subject"]),
    ).stdout;
    assert.equal(subject.trim(), `subject=${expectedSubjects[name as keyof typeof files]}`);
  }
  const admin = await adminKubeconfigEntries(layout);
  assert.equal(
    decode(admin.cluster["certificate-authority-data"]),
    await readFile(pkiFiles(layout).caCert, "utf8"),
  );
  const before = await readFile(files.admin, "utf8");
  const second = await writeComponentKubeconfigs(config, layout);
  assert.deepEqual(second.written, []);
  assert.equal(await readFile(files.admin, "utf8"), before);

  const moved = pkiTestConfig(layout.dataDir, { apiServerBindAddress: "0.0.0.0" });
  const third = await writeComponentKubeconfigs(moved, layout);
  assert.equal(third.written.length, 5);
  assert.match(
    third.written[0]?.reason ?? "",
    /server changed \(now https:\/\/127\.0\.0\.1:6443\)/,
  );
});

test("merge keeps other entries and fields, replaces its own, and kubectl reads the result", async (t) => {
  const dir = await temporaryDir(t, "kubeconfig");
  const target = join(dir, "config");
  await writeFile(target, OTHER_KUBECONFIG, { mode: 0o644 });
  await mergeIntoUserKubeconfig(target, ENTRIES);
  await mergeIntoUserKubeconfig(target, {
    ...ENTRIES,
    cluster: { ...ENTRIES.cluster, server: "https://127.0.0.1:7443" },
  });

  const merged = await readKubeconfig(target);
  assert.deepEqual(names(merged.clusters), ["prod", "sandkube"]);
  assert.deepEqual(names(merged.users), ["alice", "sandkube"]);
  assert.deepEqual(names(merged.contexts), ["prod", "sandkube"]);
  assert.equal(merged["current-context"], "sandkube");
  assert.deepEqual(merged.clusters[1], {
    name: "sandkube",
    cluster: { ...ENTRIES.cluster, server: "https://127.0.0.1:7443" },
  });
  assert.deepEqual(merged.contexts[0], {
    name: "prod",
    context: { cluster: "prod", user: "alice", namespace: "web" },
  });
  assert.deepEqual(merged["preferences"], { colors: true });
  assert.deepEqual(merged["extensions"], [{ name: "my-extension", extension: { foo: "bar" } }]);
  const text = await readFile(target, "utf8");
  assert.ok(text.startsWith("# managed by hand\n"), "the user's comment survives");
  assert.equal((await stat(target)).mode & 0o777, 0o600);
  assert.equal(existsSync(`${target}.lock`), false, "the lock is released");

  if (!existsSync(KUBECTL)) return t.skip(`SKIPPED kubectl check: ${KUBECTL} is missing`);
  const viewed = await kubectlView(target);
  assert.equal(viewed["current-context"], "sandkube");
  assert.deepEqual(names(viewed.contexts).sort(), ["prod", "sandkube"]);
});

test("merge creates the file and its folder when neither exists", async (t) => {
  const dir = await temporaryDir(t, "kubeconfig");
  const target = join(dir, "home", ".kube", "config");
  await mergeIntoUserKubeconfig(target, ENTRIES, "sandkube-dev");
  const merged = await readKubeconfig(target);
  assert.equal(merged["current-context"], "sandkube-dev");
  assert.deepEqual(merged.contexts, [
    { name: "sandkube-dev", context: { cluster: "sandkube-dev", user: "sandkube-dev" } },
  ]);
  assert.equal(merged["apiVersion"], "v1");
  if (!existsSync(KUBECTL)) return t.skip(`SKIPPED kubectl check: ${KUBECTL} is missing`);
  assert.deepEqual(names((await kubectlView(target)).clusters), ["sandkube-dev"]);
});

test("merge writes through a symlinked kubeconfig and leaves the link in place", async (t) => {
  const dir = await temporaryDir(t, "kubeconfig");
  const real = join(dir, "dotfiles-kubeconfig");
  const link = join(dir, "config");
  await writeFile(real, OTHER_KUBECONFIG);
  await symlink(real, link);
  await mergeIntoUserKubeconfig(link, ENTRIES);
  assert.ok((await lstat(link)).isSymbolicLink());
  assert.equal(await readlink(link), real);
  assert.deepEqual(names((await readKubeconfig(real)).contexts), ["prod", "sandkube"]);
});

test("remove takes out only sandkube's entries and clears current-context; twice is fine", async (t) => {
  const dir = await temporaryDir(t, "kubeconfig");
  const target = join(dir, "config");
  await writeFile(target, OTHER_KUBECONFIG);
  await mergeIntoUserKubeconfig(target, ENTRIES);
  assert.equal(await removeFromUserKubeconfig(target), true);
  const removed = await readKubeconfig(target);
  assert.deepEqual(names(removed.clusters), ["prod"]);
  assert.deepEqual(names(removed.users), ["alice"]);
  assert.deepEqual(names(removed.contexts), ["prod"]);
  assert.equal(removed["current-context"], "");
  assert.equal(await removeFromUserKubeconfig(target), false);
  assert.equal(await removeFromUserKubeconfig(join(dir, "no-such-file")), false);
  assert.equal(existsSync(join(dir, "no-such-file")), false);

  await mergeIntoUserKubeconfig(target, ENTRIES);
  await writeFile(
    target,
    (await readFile(target, "utf8")).replace(/^current-context: .*$/m, "current-context: prod"),
  );
  await removeFromUserKubeconfig(target);
  assert.equal((await readKubeconfig(target))["current-context"], "prod");
  if (!existsSync(KUBECTL)) return t.skip(`SKIPPED kubectl check: ${KUBECTL} is missing`);
  assert.deepEqual(names((await kubectlView(target)).contexts), ["prod"]);
});

test("a kubeconfig that is not YAML is refused with one clear line and left untouched", async (t) => {
  const dir = await temporaryDir(t, "kubeconfig");
  const target = join(dir, "config");
  await writeFile(target, "clusters: [unclosed\n");
  await assert.rejects(mergeIntoUserKubeconfig(target, ENTRIES), (error: unknown) => {
    assert.ok(error instanceof UsageError);
    assert.match(error.message, new RegExp(`^${target} is not a valid kubeconfig \\(.*\\); fix`));
    return true;
  });
  assert.equal(await readFile(target, "utf8"), "clusters: [unclosed\n");
  assert.equal(existsSync(`${target}.lock`), false);
});

test("concurrent merges are serialised by the lock and none is lost", async (t) => {
  const dir = await temporaryDir(t, "kubeconfig");
  const target = join(dir, "config");
  const contexts = ["a", "b", "c", "d", "e"];
  await Promise.all(
    contexts.map((name) => mergeIntoUserKubeconfig(target, ENTRIES, name, { pollMs: 5 })),
  );
  assert.deepEqual(names((await readKubeconfig(target)).contexts).sort(), contexts);
});

test("a held lock is waited for; a stale one fails naming the file to delete", async (t) => {
  const dir = await temporaryDir(t, "kubeconfig");
  const target = join(dir, "config");
  const lock = `${target}.lock`;

  await writeFile(lock, `${process.pid}\n`);
  const released = new Promise<void>((done) => setTimeout(() => rm(lock).then(done), 300));
  await mergeIntoUserKubeconfig(target, ENTRIES, "sandkube", { timeoutMs: 10_000 });
  await released;
  assert.equal((await readKubeconfig(target))["current-context"], "sandkube");

  // A pid that certainly exited: a child we ran to completion.
  const child = await runCommand(["sh", "-c", "echo $$"]);
  const deadPid = Number.parseInt(child.stdout, 10);
  await writeFile(lock, `${deadPid}\n`);
  await assert.rejects(
    mergeIntoUserKubeconfig(target, ENTRIES, "other", { timeoutMs: 300, pollMs: 50 }),
    (error: unknown) => {
      assert.ok(error instanceof KubeconfigLockedError);
      assert.equal(error.lockPath, lock);
      assert.match(error.message, new RegExp(`${lock} exists and was not released`));
      assert.match(error.message, new RegExp(`pid ${deadPid}, which is no longer running`));
      assert.match(error.message, new RegExp(`delete ${lock} and run the command again`));
      return true;
    },
  );
  assert.equal(existsSync(lock), true, "a lock we do not own is never removed");
  assert.deepEqual(names((await readKubeconfig(target)).contexts), ["sandkube"]);

  // client-go's own locks are empty: still a clear message.
  await writeFile(lock, "");
  await assert.rejects(
    removeFromUserKubeconfig(target, "sandkube", { timeoutMs: 200, pollMs: 50 }),
    /exists and was not released within 0\.\d s\. If no kubectl/,
  );
});

test("target: --kubeconfig, else the first existing $KUBECONFIG file, else its first, else ~/.kube/config", async (t) => {
  const dir = await temporaryDir(t, "kubeconfig");
  await mkdir(join(dir, "b"));
  await writeFile(join(dir, "b", "config"), "");
  const a = join(dir, "a", "config");
  const b = join(dir, "b", "config");
  const home = join(dir, "home");
  assert.equal(resolveKubeconfigTarget({ flag: "/x/k.yaml", env: b, home }), "/x/k.yaml");
  assert.equal(resolveKubeconfigTarget({ flag: "k.yaml", home, cwd: "/work" }), "/work/k.yaml");
  assert.equal(resolveKubeconfigTarget({ env: `${a}:${b}`, home }), b);
  assert.equal(resolveKubeconfigTarget({ env: `:${a}:${join(dir, "c")}`, home }), a);
  assert.equal(resolveKubeconfigTarget({ env: "", home }), join(home, ".kube", "config"));
  assert.equal(resolveKubeconfigTarget({ home }), join(home, ".kube", "config"));
  assert.equal(
    resolveKubeconfigTarget({ flag: "", env: undefined, home, exists: () => false }),
    join(home, ".kube", "config"),
  );
});
