import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parse as parseToml } from "smol-toml";
import { parse as parseYaml } from "yaml";
import { parseImagesArgs } from "../../src/cli/images.js";
import { UsageError } from "../../src/cli/usage-error.js";
import { nodeLayout } from "../../src/node/layout.js";
import { DEFAULT_NETWORK } from "../../src/plan/cluster-config.js";
import { registryHostsDir, renderContainerdConfig } from "../../src/plan/containerd-config.js";
import {
  authKeyHost,
  holdsPemCertificate,
  parseCredentialsFile,
  readRegistryLogins,
  renderKubeletDockerConfig,
} from "../../src/registry/credentials.js";
import { renderHostsFiles, renderHostsToml, serverUrl } from "../../src/registry/hosts.js";
import { bcryptSalt, renderLocalRegistryConfig } from "../../src/registry/local.js";
import {
  parseRegistryOptions,
  parseRegistryOptionsText,
  type RegistryConfig,
} from "../../src/registry/options.js";
import { containerdProxyEnv } from "../../src/registry/proxy-env.js";
import {
  ctrFailureLine,
  pullArgv,
  pushArgv,
  redact,
  shellQuote,
  withPasswordOnTerminal,
} from "../../src/registry/transfer.js";
import { replayCoreFacts } from "../fixtures/doctor-fixtures.js";

/** smol-toml's tables have a null prototype; deepEqual wants plain objects. */
function toml(text: string): Record<string, unknown> {
  return JSON.parse(JSON.stringify(parseToml(text))) as Record<string, unknown>;
}

function usageError(message: RegExp): (e: unknown) => boolean {
  return (e: unknown) => e instanceof UsageError && e.exitCode === 2 && message.test(e.message);
}

const base: RegistryConfig = {
  host: "registry.example:5000",
  mirrors: [],
  insecureSkipVerify: false,
};

describe("registry options", () => {
  test("a full entry is normalized: host lower-cased, mirror without trailing slash", () => {
    const options = parseRegistryOptions({
      registries: [
        {
          host: "Registry.Example:5000",
          mirrors: ["https://mirror.example/cache/", "http://127.0.0.1:5000"],
          ca: "/etc/sandkube/ca.pem",
          credentialsFile: "/etc/sandkube/auth.json",
        },
        { host: "docker.io", insecureSkipVerify: true },
      ],
    });
    assert.deepEqual(options.registries, [
      {
        host: "registry.example:5000",
        mirrors: ["https://mirror.example/cache", "http://127.0.0.1:5000"],
        ca: "/etc/sandkube/ca.pem",
        insecureSkipVerify: false,
        credentialsFile: "/etc/sandkube/auth.json",
      },
      { host: "docker.io", mirrors: [], insecureSkipVerify: true },
    ]);
  });

  test("each bad entry gets one line naming it and the fix", () => {
    const bad = (entry: unknown) => () => parseRegistryOptions({ registries: [entry] }, "r.yaml");
    assert.throws(
      bad({ host: "https://registry.example:5000" }),
      usageError(
        /^r\.yaml: registries\[0\]: host https:\/\/registry\.example:5000 has a scheme; .* host: registry\.example:5000$/,
      ),
    );
    assert.throws(bad({ host: "registry.example/team" }), usageError(/has a path/));
    assert.throws(bad({ host: "registry.example:99999" }), usageError(/is not host\[:port\]/));
    assert.throws(bad({ host: "bad host" }), usageError(/is not host\[:port\]/));
    assert.throws(bad({}), usageError(/host is required/));
    assert.throws(bad({ host: "r.example", mirror: ["x"] }), usageError(/unknown key mirror;/));
    assert.throws(bad({ host: "r.example", mirrors: "https://m" }), usageError(/must be a list/));
    assert.throws(
      bad({ host: "r.example", mirrors: ["ftp://m"] }),
      usageError(/not an http\(s\) URL/),
    );
    assert.throws(
      bad({ host: "r.example", mirrors: ["https://u:p@m"] }),
      usageError(/without login/),
    );
    assert.throws(
      bad({ host: "r.example", ca: "ca.pem" }),
      usageError(/ca must be an absolute path/),
    );
    assert.throws(
      bad({ host: "r.example", ca: "/ca.pem", insecureSkipVerify: true }),
      usageError(/ca or insecureSkipVerify, not both/),
    );
    assert.throws(
      bad({ host: "r.example", insecureSkipVerify: "yes" }),
      usageError(/true or false/),
    );
    assert.throws(
      () => parseRegistryOptions({ registries: [{ host: "a.example" }, { host: "A.example" }] }),
      usageError(/registries\[1\]: host a\.example is listed twice/),
    );
    assert.throws(() => parseRegistryOptions([]), usageError(/expected \{ registries: \[/));
    assert.throws(
      () => parseRegistryOptions({ registries: [], mirrors: {} }),
      usageError(/unknown key mirrors/),
    );
  });

  test("the options file may be YAML or JSON", () => {
    const yaml = parseRegistryOptionsText("registries:\n  - host: 127.0.0.1:5000\n", "/r.yaml");
    const json = parseRegistryOptionsText('{"registries":[{"host":"127.0.0.1:5000"}]}', "/r.json");
    assert.deepEqual(yaml, json);
    assert.throws(
      () => parseRegistryOptionsText("registries: [", "/r.yaml"),
      usageError(/^\/r\.yaml: not YAML or JSON/),
    );
  });
});

describe("hosts.toml", () => {
  test("the registry alone: server with its CA; containerd's loopback skip-verify is not kept", () => {
    const text = renderHostsToml({ ...base, host: "127.0.0.1:5000", ca: "/x/ca.pem" });
    assert.deepEqual(toml(text), { server: "https://127.0.0.1:5000", ca: "/x/ca.pem" });
  });

  test("mirrors first, in order, pull and resolve only; trust settings on every entry", () => {
    const text = renderHostsToml({
      ...base,
      mirrors: ["https://b.example", "http://a.example:5000/v2-cache"],
      insecureSkipVerify: true,
    });
    assert.deepEqual(toml(text), {
      server: "https://registry.example:5000",
      skip_verify: true,
      host: {
        "https://b.example": { capabilities: ["pull", "resolve"], skip_verify: true },
        "http://a.example:5000/v2-cache": { capabilities: ["pull", "resolve"], skip_verify: true },
      },
    });
    // containerd tries [host] tables in the order they appear in the file (getSortedHosts).
    assert.ok(
      text.indexOf('"https://b.example"') < text.indexOf('"http://a.example:5000/v2-cache"'),
    );
    assert.ok(!/skip_verify/.test(renderHostsToml(base)), "skip_verify only when asked");
  });

  test("docker.io's server is registry-1.docker.io; one folder per host", () => {
    assert.equal(serverUrl("docker.io"), "https://registry-1.docker.io");
    const files = renderHostsFiles({
      registries: [base, { ...base, host: "docker.io", mirrors: ["https://mirror.example"] }],
    });
    assert.deepEqual(Object.keys(files), [
      "registry.example:5000/hosts.toml",
      "docker.io/hosts.toml",
    ]);
    assert.equal(
      toml(files["docker.io/hosts.toml"] ?? "")["server"],
      "https://registry-1.docker.io",
    );
  });

  test("containerd's config.toml points the CRI plugin at the node's own certs.d by default", async () => {
    const facts = await replayCoreFacts("host-kernel");
    const layout = nodeLayout("/var/lib/sandkube");
    assert.equal(registryHostsDir(layout), "/var/lib/sandkube/containerd/certs.d");
    const render = (registryConfigPath?: string) =>
      toml(
        renderContainerdConfig(
          {
            snapshotter: "overlayfs",
            sandboxImage: "registry.k8s.io/pause:3.10.2-sandkube",
            binaries: { ociRuntime: "/x/runc", cniBinDir: "/x/cni" },
          },
          facts,
          layout,
          registryConfigPath === undefined ? { platform: "linux/amd64" } : { registryConfigPath },
        ),
      ) as { plugins: Record<string, { registry?: { config_path: string } }> };
    assert.deepEqual(render().plugins["io.containerd.cri.v1.images"]?.registry, {
      config_path: "/var/lib/sandkube/containerd/certs.d",
    });
    assert.deepEqual(render("/y/certs.d").plugins["io.containerd.cri.v1.images"]?.registry, {
      config_path: "/y/certs.d",
    });
  });
});

describe("credentials", () => {
  const b64 = (s: string) => Buffer.from(s).toString("base64");

  test("docker config.json: auth, username/password, URL keys, Docker Hub's legacy key", () => {
    const file = JSON.stringify({
      auths: {
        "registry.example:5000": { auth: b64("alice:pa:ss") },
        "https://other.example/v2/": { username: "bob", password: "x" },
        "https://index.docker.io/v1/": { auth: b64("carol:y") },
      },
    });
    assert.deepEqual(parseCredentialsFile(file, "/a.json", "registry.example:5000"), {
      host: "registry.example:5000",
      username: "alice",
      password: "pa:ss",
    });
    assert.equal(parseCredentialsFile(file, "/a.json", "other.example").username, "bob");
    assert.equal(parseCredentialsFile(file, "/a.json", "docker.io").username, "carol");
    assert.equal(authKeyHost("https://Registry-1.Docker.io/v2/"), "docker.io");
  });

  test("a file of one login is that registry's", () => {
    assert.deepEqual(
      parseCredentialsFile('{"username":"u","password":"p"}', "/u.json", "r.example"),
      { host: "r.example", username: "u", password: "p" },
    );
  });

  test("bad files: one line naming the file, never the secret", () => {
    const parse = (text: string) => () => parseCredentialsFile(text, "/a.json", "r.example");
    assert.throws(parse("user:pass"), usageError(/^\/a\.json: not JSON;/));
    assert.throws(parse("[]"), usageError(/expected a JSON object/));
    assert.throws(
      parse('{"auths": {"x.example": {"auth": "eDp5"}}}'),
      usageError(/no login for r\.example \(it has x\.example\)/),
    );
    assert.throws(
      parse('{"auths": {"r.example": {"auth": "!!not-base64!!"}}}'),
      usageError(/not base64 of user:password/),
    );
    assert.throws(
      parse(`{"auths": {"r.example": {"auth": "${b64("nocolon")}"}}}`),
      (e: unknown) => {
        assert.ok(e instanceof UsageError);
        assert.ok(!e.message.includes("nocolon"), e.message);
        return true;
      },
    );
    assert.throws(
      parse('{"auths": {"r.example": {}}}'),
      usageError(/neither auth .* nor username and password/),
    );
    assert.throws(
      parse('{"auths": {"r.example": {"identitytoken": "t"}}}'),
      usageError(/identity token/),
    );
  });

  test("kubelet's config.json round-trips through the parser kubelet's format shares", () => {
    const text = renderKubeletDockerConfig([
      { host: "127.0.0.1:5000", username: "alice", password: "p:w" },
      { host: "docker.io", username: "bob", password: "q" },
    ]);
    assert.deepEqual(JSON.parse(text), {
      auths: { "127.0.0.1:5000": { auth: b64("alice:p:w") }, "docker.io": { auth: b64("bob:q") } },
    });
    assert.equal(parseCredentialsFile(text, "/k.json", "127.0.0.1:5000").password, "p:w");
  });

  test("readRegistryLogins: a CA that does not exist or holds no certificate is a UsageError", async () => {
    const files: Record<string, string> = {
      "/ca.pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
      "/key.pem": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
      "/auth.json": JSON.stringify({ auths: { "r.example": { auth: b64("u:p") } } }),
    };
    const reader = async (path: string): Promise<string> => {
      const text = files[path];
      if (text === undefined) throw Object.assign(new Error("nope"), { code: "ENOENT" });
      return text;
    };
    const options = (entry: Partial<RegistryConfig>) => ({
      registries: [{ ...base, host: "r.example", ...entry }],
    });
    assert.deepEqual(
      await readRegistryLogins(options({ ca: "/ca.pem", credentialsFile: "/auth.json" }), reader),
      [{ host: "r.example", username: "u", password: "p" }],
    );
    await assert.rejects(
      readRegistryLogins(options({ ca: "/missing.pem" }), reader),
      usageError(
        /^registry r\.example: ca \/missing\.pem does not exist; give the path of an existing file\.$/,
      ),
    );
    await assert.rejects(
      readRegistryLogins(options({ ca: "/key.pem" }), reader),
      usageError(/holds no PEM certificate/),
    );
    await assert.rejects(
      readRegistryLogins(options({ credentialsFile: "/none.json" }), reader),
      usageError(/credentialsFile \/none\.json does not exist/),
    );
    assert.equal(holdsPemCertificate(files["/ca.pem"] ?? ""), true);
  });
});

describe("containerd's proxy environment", () => {
  test("no proxy set: nothing added", () => {
    assert.deepEqual(containerdProxyEnv({ NO_PROXY: "corp.example" }, DEFAULT_NETWORK), {});
  });

  test("either spelling in, both out; the cluster's own ranges appended to the user's NO_PROXY", () => {
    const env = containerdProxyEnv(
      {
        https_proxy: "http://proxy.corp:3128",
        HTTP_PROXY: "http://proxy.corp:3128",
        http_proxy: "http://ignored:1",
        no_proxy: "corp.example, 10.0.0.0/8,localhost",
      },
      DEFAULT_NETWORK,
    );
    const noProxy =
      "corp.example,10.0.0.0/8,localhost,127.0.0.1,::1,10.244.0.1,10.244.0.0/16,10.96.0.0/16,.svc,.cluster.local";
    assert.deepEqual(env, {
      HTTPS_PROXY: "http://proxy.corp:3128",
      https_proxy: "http://proxy.corp:3128",
      HTTP_PROXY: "http://proxy.corp:3128",
      http_proxy: "http://proxy.corp:3128",
      NO_PROXY: noProxy,
      no_proxy: noProxy,
    });
  });
});

describe("the local registry and push/pull command lines", () => {
  test("bcrypt salts: 22 characters of bcrypt's alphabet, the last carrying 2 bits", () => {
    assert.equal(bcryptSalt(Buffer.alloc(16, 0)), "......................");
    assert.equal(bcryptSalt(Buffer.alloc(16, 0xff)), `${"9".repeat(21)}u`);
    assert.throws(() => bcryptSalt(Buffer.alloc(15)));
  });

  test("docker-registry's config.yml: TLS and htpasswd only when given", () => {
    const full = parseYaml(
      renderLocalRegistryConfig({
        dir: "/r",
        address: "127.0.0.1:5000",
        tls: { cert: "/r/cert.pem", key: "/r/key.pem" },
        htpasswd: "/r/htpasswd",
      }),
    ) as Record<string, Record<string, unknown>>;
    assert.deepEqual(full["http"]?.["tls"], { certificate: "/r/cert.pem", key: "/r/key.pem" });
    assert.equal(full["http"]?.["addr"], "127.0.0.1:5000");
    assert.deepEqual(full["auth"], { htpasswd: { realm: "sandkube", path: "/r/htpasswd" } });
    assert.deepEqual(full["storage"]?.["filesystem"], { rootdirectory: "/r/data" });
    const plain = parseYaml(
      renderLocalRegistryConfig({ dir: "/r", address: "127.0.0.1:5000" }),
    ) as Record<string, Record<string, unknown>>;
    assert.equal(plain["auth"], undefined);
    assert.equal(plain["http"]?.["tls"], undefined);
  });

  test("ctr pull and push: transfer service, the node's hosts dir, a user but never a password", () => {
    const target = {
      ctr: "/b/ctr",
      socket: "/s.sock",
      hostsDir: "/d/certs.d",
      snapshotter: "native",
    };
    assert.deepEqual(pullArgv(target, "127.0.0.1:5000/a:b", "alice"), [
      "/b/ctr",
      "--address",
      "/s.sock",
      "--namespace",
      "k8s.io",
      "images",
      "pull",
      "--hosts-dir",
      "/d/certs.d",
      "--snapshotter",
      "native",
      "--user",
      "alice",
      "127.0.0.1:5000/a:b",
    ]);
    assert.deepEqual(pushArgv(target, "r.example/a:b"), [
      "/b/ctr",
      "--address",
      "/s.sock",
      "--namespace",
      "k8s.io",
      "images",
      "push",
      "--hosts-dir",
      "/d/certs.d",
      "r.example/a:b",
    ]);
    assert.deepEqual(withPasswordOnTerminal(["/b/ctr", "it's", "a b"]), [
      "script",
      "-E",
      "never",
      "-qec",
      "/b/ctr 'it'\\''s' 'a b'",
      "/dev/null",
    ]);
    assert.equal(shellQuote("127.0.0.1:5000/a:b"), "127.0.0.1:5000/a:b");
    assert.equal(redact("x secret y secret", "secret"), "x *** y ***");
  });

  test("ctr's failure line: its own `ctr:` line, not the password prompt", () => {
    const result = {
      argv: [],
      exitCode: 1,
      stdout: "Password: \r\n\r\nctr: failed to resolve image: ... 401 Unauthorized\r\n",
      stderr: "",
    };
    assert.equal(ctrFailureLine(result), "ctr: failed to resolve image: ... 401 Unauthorized");
  });

  test("images pull/push: one reference, --credentials, the registry it names", () => {
    assert.deepEqual(
      parseImagesArgs([
        "pull",
        "127.0.0.1:5000/app:dev",
        "--credentials=/a.json",
        "--data-dir",
        "/d",
      ]),
      {
        action: "pull",
        dataDir: "/d",
        json: false,
        ref: "127.0.0.1:5000/app:dev",
        registry: "127.0.0.1:5000",
        credentials: "/a.json",
      },
    );
    const push = parseImagesArgs(["push", "busybox"]);
    assert.equal(push.action, "push");
    assert.ok(
      push.action === "push" &&
        push.ref === "docker.io/library/busybox:latest" &&
        push.registry === "docker.io",
    );
    assert.throws(
      () => parseImagesArgs(["pull"]),
      usageError(/name the image, e\.g\. sandkube images pull/),
    );
    assert.throws(() => parseImagesArgs(["push", "a", "b"]), usageError(/one image at a time/));
    assert.throws(
      () => parseImagesArgs(["pull", "x/UPPER"]),
      usageError(/^images pull: "x\/UPPER" is not a valid image name/),
    );
    assert.throws(
      () => parseImagesArgs(["pull", "x", "--password", "p"]),
      usageError(/unknown argument "--password"/),
    );
  });
});
