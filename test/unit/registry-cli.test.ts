import assert from "node:assert/strict";
import { test } from "node:test";
import {
  DEFAULT_REGISTRY_ADDRESS,
  humanBytes,
  isLoopbackHost,
  parseListenAddress,
  parseRegistryArgs,
  parseRegistryRecord,
  referenceHost,
  registriesHint,
} from "../../src/cli/registry.js";
import { UsageError } from "../../src/cli/usage-error.js";
import { renderHostsToml } from "../../src/registry/hosts.js";
import { isRegistryCmdline } from "../../src/registry/local.js";
import { parseRegistryOptionsText, type RegistryConfig } from "../../src/registry/options.js";

function usageError(message: RegExp): (e: unknown) => boolean {
  return (e: unknown) => e instanceof UsageError && e.exitCode === 2 && message.test(e.message);
}

const NO_ENV = {};

test("registry start: defaults, DIR under the data dir as the other commands resolve it", () => {
  assert.deepEqual(parseRegistryArgs(["start"], NO_ENV), {
    action: "start",
    dir: "/var/lib/sandkube/registry",
    json: false,
    address: DEFAULT_REGISTRY_ADDRESS,
    addressGiven: false,
    tls: null,
    htpasswd: null,
  });
  const fromEnv = parseRegistryArgs(["status"], { SANDKUBE_DATA_DIR: "/srv/sk" });
  assert.deepEqual(fromEnv, { action: "status", dir: "/srv/sk/registry", json: false });
  const fromFlag = parseRegistryArgs(["stop", "--data-dir=/d/../data", "--json"], {
    SANDKUBE_DATA_DIR: "/srv/sk",
  });
  assert.deepEqual(fromFlag, { action: "stop", dir: "/data/registry", json: true, purge: false });
});

test("registry start: every flag, spaced and with =", () => {
  assert.deepEqual(
    parseRegistryArgs(
      [
        "start",
        "--address",
        "0.0.0.0:5001",
        "--tls-cert=/etc/r/cert.pem",
        "--tls-key",
        "/etc/r/key.pem",
        "--htpasswd",
        "/etc/r/htpasswd",
        "--dir",
        "/tmp/reg",
        "--json",
      ],
      NO_ENV,
    ),
    {
      action: "start",
      dir: "/tmp/reg",
      json: true,
      address: "0.0.0.0:5001",
      addressGiven: true,
      tls: { cert: "/etc/r/cert.pem", key: "/etc/r/key.pem" },
      htpasswd: "/etc/r/htpasswd",
    },
  );
  assert.deepEqual(parseRegistryArgs(["stop", "--purge", "--dir", "/r"], NO_ENV), {
    action: "stop",
    dir: "/r",
    json: false,
    purge: true,
  });
  assert.deepEqual(parseRegistryArgs(["--help"], NO_ENV), { action: "help" });
  assert.deepEqual(parseRegistryArgs(["start", "-h"], NO_ENV), { action: "help" });
});

test("registry: bad input is one UsageError line, exit status 2", () => {
  assert.throws(() => parseRegistryArgs([], NO_ENV), usageError(/say what to do/));
  assert.throws(() => parseRegistryArgs(["restart"], NO_ENV), usageError(/unknown action/));
  assert.throws(
    () => parseRegistryArgs(["start", "--purge"], NO_ENV),
    usageError(/registry start: unknown flag --purge/),
  );
  assert.throws(
    () => parseRegistryArgs(["status", "extra"], NO_ENV),
    usageError(/unexpected argument "extra"/),
  );
  assert.throws(
    () => parseRegistryArgs(["start", "--address"], NO_ENV),
    usageError(/--address needs a value/),
  );
  assert.throws(
    () => parseRegistryArgs(["start", "--tls-cert", "/c.pem"], NO_ENV),
    usageError(/--tls-cert needs --tls-key/),
  );
  assert.throws(
    () => parseRegistryArgs(["start", "--tls-key", "/k.pem"], NO_ENV),
    usageError(/--tls-key needs --tls-cert/),
  );
  assert.throws(
    () => parseRegistryArgs(["stop", "--dir", "/a", "--data-dir", "/b"], NO_ENV),
    usageError(/not both/),
  );
});

test("registry start: --address is HOST:PORT with a host that can be checked", () => {
  assert.deepEqual(parseListenAddress("127.0.0.1:5000"), { host: "127.0.0.1", port: 5000 });
  assert.deepEqual(parseListenAddress("[::1]:5000"), { host: "::1", port: 5000 });
  assert.deepEqual(parseListenAddress("localhost:65535"), { host: "localhost", port: 65535 });
  for (const [bad, why] of [
    ["5000", /is not HOST:PORT/],
    [":5000", /has no host/],
    ["127.0.0.1:0", /no port between 1 and 65535/],
    ["127.0.0.1:70000", /no port between 1 and 65535/],
    ["127.0.0.1:", /no port/],
    ["registry.example:5000", /not an IPv4 address, \[IPv6\] or localhost/],
    ["300.0.0.1:5000", /not an IPv4 address/],
    ["::1:5000", /is not HOST:PORT/],
    ["[zz]:5000", /not an IPv4 address/],
    ["http://127.0.0.1:5000", /is not HOST:PORT/],
  ] as const) {
    assert.throws(
      () => parseRegistryArgs(["start", "--address", bad], NO_ENV),
      usageError(new RegExp(`--address ${bad.replace(/[[\]]/g, "\\$&")} .*${why.source}`)),
      bad,
    );
  }
});

test("registry: the name image references use, and what containerd calls loopback", () => {
  assert.equal(referenceHost("0.0.0.0:5000"), "127.0.0.1:5000");
  assert.equal(referenceHost("[::]:5000"), "[::1]:5000");
  assert.equal(referenceHost("[::1]:5000"), "[::1]:5000");
  assert.equal(referenceHost("10.0.0.5:5000"), "10.0.0.5:5000");
  assert.ok(isLoopbackHost("127.0.0.1:5000"));
  assert.ok(isLoopbackHost("127.1.2.3:5000"));
  assert.ok(isLoopbackHost("localhost:5000"));
  assert.ok(isLoopbackHost("[::1]:5000"));
  assert.ok(!isLoopbackHost("10.0.0.5:5000"));
  assert.ok(!isLoopbackHost("128.0.0.1:5000"));
});

/** Each hint's registries line is a whole --registries file: the real parser must take it. */
function parsedHint(line: string | null): RegistryConfig[] {
  assert.ok(line !== null);
  return [...parseRegistryOptionsText(line, "hint.yaml").registries];
}

function only(entries: RegistryConfig[]): RegistryConfig {
  assert.equal(entries.length, 1);
  return entries[0] as RegistryConfig;
}

test("registry hint: plain HTTP on loopback needs no entry; the docker.io mirror line parses", () => {
  const hint = registriesHint("127.0.0.1:5000", null, false, "/var/lib/sandkube/registry");
  assert.equal(hint.registries, null);
  assert.match(hint.note, /no --registries entry/);
  const mirror = only(parsedHint(hint.mirror));
  assert.deepEqual(mirror, {
    host: "docker.io",
    mirrors: ["http://127.0.0.1:5000"],
    insecureSkipVerify: false,
  });
  assert.match(renderHostsToml(mirror), /\[host\."http:\/\/127\.0\.0\.1:5000"\]/);
});

test("registry hint: plain HTTP with a login, or off loopback, is an http:// mirror of itself", () => {
  const withLogin = registriesHint("127.0.0.1:5000", null, true, "/r");
  const entry = only(parsedHint(withLogin.registries));
  assert.deepEqual(entry, {
    host: "127.0.0.1:5000",
    mirrors: ["http://127.0.0.1:5000"],
    insecureSkipVerify: false,
    credentialsFile: "/r/login.json",
  });
  const toml = renderHostsToml(entry);
  assert.match(toml, /server = "https:\/\/127\.0\.0\.1:5000"/);
  assert.match(
    toml,
    /\[host\."http:\/\/127\.0\.0\.1:5000"\]\ncapabilities = \[ "pull", "resolve" \]/,
  );
  assert.match(withLogin.note, /\/r\/login\.json/);

  const remote = registriesHint("10.0.0.5:5000", null, false, "/r");
  assert.deepEqual(parsedHint(remote.registries), [
    { host: "10.0.0.5:5000", mirrors: ["http://10.0.0.5:5000"], insecureSkipVerify: false },
  ]);
  const v6 = registriesHint("[::1]:5000", null, true, "/r");
  assert.equal(parsedHint(v6.registries)[0]?.host, "[::1]:5000");
});

test("registry hint: with TLS the certificate is the CA", () => {
  const hint = registriesHint("0.0.0.0:5443", { cert: "/etc/my reg/cert.pem" }, true, "/r");
  assert.deepEqual(parsedHint(hint.registries), [
    {
      host: "127.0.0.1:5443",
      mirrors: [],
      ca: "/etc/my reg/cert.pem",
      insecureSkipVerify: false,
      credentialsFile: "/r/login.json",
    },
  ]);
  assert.deepEqual(parsedHint(hint.mirror)[0]?.mirrors, ["https://127.0.0.1:5443"]);
});

test("registry.json: only a whole record is one", () => {
  const record = {
    schema: "sandkube.registry/v1",
    pid: 4242,
    startTime: "123456",
    address: "127.0.0.1:5000",
    url: "http://127.0.0.1:5000",
    started: "2026-12-07T00:00:00.000Z",
    tls: null,
    auth: null,
    config: "/r/config.yml",
    log: "/r/registry.log",
  };
  assert.deepEqual(parseRegistryRecord(JSON.stringify(record)), record);
  assert.equal(parseRegistryRecord("{"), undefined);
  assert.equal(parseRegistryRecord("null"), undefined);
  assert.equal(parseRegistryRecord(JSON.stringify({ ...record, schema: "x" })), undefined);
  assert.equal(parseRegistryRecord(JSON.stringify({ ...record, pid: 1 })), undefined);
  assert.equal(parseRegistryRecord(JSON.stringify({ ...record, pid: "4242" })), undefined);
  const { config: _config, ...noConfig } = record;
  assert.equal(parseRegistryRecord(JSON.stringify(noConfig)), undefined);
});

test("registry stop: a pid counts only when it is docker-registry serving this DIR's config", () => {
  const config = "/var/lib/sandkube/registry/config.yml";
  assert.ok(isRegistryCmdline(`/usr/bin/docker-registry\0serve\0${config}\0`, config));
  assert.ok(!isRegistryCmdline(`/usr/bin/docker-registry\0serve\0/other/config.yml\0`, config));
  assert.ok(!isRegistryCmdline(`/bin/sleep\0${config}\0`, config));
  assert.ok(!isRegistryCmdline("", config));
});

test("registry status: sizes", () => {
  assert.equal(humanBytes(0), "0 B");
  assert.equal(humanBytes(1023), "1023 B");
  assert.equal(humanBytes(1536), "1.5 KiB");
  assert.equal(humanBytes(26 * 1024 * 1024), "26.0 MiB");
});
