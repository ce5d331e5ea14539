import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { runCommand, type CommandResult } from "../../src/common/exec.js";
import { identify } from "../../src/node/process-identity.js";
import {
  DEBIAN_DOCKER_REGISTRY,
  isRegistryProcess,
  writeHtpasswd,
} from "../../src/registry/local.js";
import { freeLoopbackPort } from "../../src/common/net.js";

/**
 * `sandkube registry start|stop|status` against Debian's real docker-registry, on free loopback
 * ports, in temporary dirs. No node is started: the registry stands alone.
 */

const REPO = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const CLI = join(REPO, "dist/src/cli/main.js");

const reason = existsSync(DEBIAN_DOCKER_REGISTRY)
  ? undefined
  : `SKIPPED: ${DEBIAN_DOCKER_REGISTRY} missing; apt-get install docker-registry (scripts/setup.sh)`;
if (reason !== undefined) process.stderr.write(`\n*** registry-cli: ${reason}\n`);

const scratch = mkdtempSync(join(tmpdir(), "sandkube-registry-cli-"));
/** Every pid a test started, so a failed assertion leaves no registry behind. */
const started = new Set<number>();
after(() => {
  for (const pid of started) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  rmSync(scratch, { recursive: true, force: true });
});

function sandkube(...args: string[]): Promise<CommandResult> {
  return runCommand([process.execPath, CLI, "registry", ...args], { timeoutMs: 60_000 });
}

function v2Status(address: string): Promise<number | string> {
  return new Promise((resolve) => {
    const request = http.get(`http://${address}/v2/`, { timeout: 5000 }, (response) => {
      response.resume();
      resolve(response.statusCode ?? "no status");
    });
    request.on("error", (error) => resolve(error.message));
    request.on("timeout", () => request.destroy(new Error("timeout")));
  });
}

interface RegistryJson {
  pid: number;
  address: string;
  config: string;
}

function readRecord(dir: string): RegistryJson {
  return JSON.parse(readFileSync(join(dir, "registry.json"), "utf8")) as RegistryJson;
}

async function startIn(dir: string, ...extra: string[]): Promise<{ address: string; pid: number }> {
  const address = `127.0.0.1:${await freeLoopbackPort()}`;
  const result = await sandkube("start", "--dir", dir, "--address", address, "--json", ...extra);
  assert.equal(result.exitCode, 0, `start failed: ${result.stderr}`);
  const out = JSON.parse(result.stdout) as { pid: number; address: string; running: boolean };
  started.add(out.pid);
  assert.equal(out.address, address);
  assert.equal(out.running, true);
  return { address, pid: out.pid };
}

async function gone(pid: number, config: string): Promise<boolean> {
  return !(await isRegistryProcess(pid, config));
}

describe("sandkube registry (real docker-registry on loopback)", { skip: reason }, () => {
  test("start, already running, status, stop: the process goes and the record with it", async () => {
    const dir = join(scratch, "plain");
    const { address, pid } = await startIn(dir);
    const record = readRecord(dir);
    assert.equal(record.pid, pid);
    assert.equal(record.config, join(dir, "config.yml"));
    assert.ok(await isRegistryProcess(pid, record.config), "recorded pid is docker-registry");
    assert.equal(await v2Status(address), 200);
    // Started by a CLI process that has exited: the registry lives on in its own session.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    assert.equal(fields[3], String(pid), "docker-registry leads its own session (setsid)");

    const again = await sandkube("start", "--dir", dir);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.match(
      again.stdout,
      new RegExp(`already running in ${dir}: http://${address} \\(pid ${pid}\\)`),
    );
    assert.equal(readRecord(dir).pid, pid, "a second start changes nothing");

    const elsewhere = await sandkube("start", "--dir", dir, "--address", "127.0.0.1:1");
    assert.equal(elsewhere.exitCode, 1);
    assert.match(
      elsewhere.stderr,
      /other settings than --address 127\.0\.0\.1:1; run `sandkube registry stop --dir/,
    );

    const status = await sandkube("status", "--dir", dir, "--json");
    assert.equal(status.exitCode, 0, status.stderr);
    const report = JSON.parse(status.stdout) as {
      running: boolean;
      answering: boolean;
      pid: number;
    };
    assert.deepEqual([report.running, report.answering, report.pid], [true, true, pid]);

    const stop = await sandkube("stop", "--dir", dir);
    assert.equal(stop.exitCode, 0, stop.stderr);
    assert.match(
      stop.stdout,
      new RegExp(`registry stopped \\(pid ${pid}\\); images kept in ${dir}/data`),
    );
    assert.ok(await gone(pid, record.config), "docker-registry is gone");
    started.delete(pid);
    assert.ok(!existsSync(join(dir, "registry.json")), "registry.json removed");
    assert.ok(existsSync(join(dir, "data")), "the blobs stay without --purge");
    assert.notEqual(await v2Status(address), 200);

    const stoppedStatus = await sandkube("status", "--dir", dir);
    assert.equal(stoppedStatus.exitCode, 3);
    assert.match(stoppedStatus.stdout, /registry: stopped/);
    const twice = await sandkube("stop", "--dir", dir);
    assert.equal(twice.exitCode, 0);
    assert.match(twice.stdout, /no registry recorded/);
  });

  test("a stale record: a recycled pid is never signalled, a gone one is forgotten", async () => {
    const dir = join(scratch, "stale");
    const { pid } = await startIn(dir);
    const record = readRecord(dir);
    // Stand-in for a pid reused by an unrelated process: alive, same start time, not the registry.
    const sleeper = spawn("sleep", ["60"], { stdio: "ignore" });
    try {
      const identity = await identify(sleeper.pid ?? -1);
      assert.ok(identity !== undefined);
      writeFileSync(
        join(dir, "registry.json"),
        JSON.stringify({ ...record, pid: identity.pid, startTime: identity.startTime }),
      );
      const status = await sandkube("status", "--dir", dir);
      assert.equal(status.exitCode, 3);
      assert.match(status.stdout, /stale record/);
      const stop = await sandkube("stop", "--dir", dir);
      assert.equal(stop.exitCode, 0, stop.stderr);
      assert.match(
        stop.stdout,
        /registry was not running: .*nothing was signalled\. Removed the stale record/,
      );
      assert.equal(sleeper.exitCode, null, "the unrelated process was not signalled");
      assert.ok((await identify(identity.pid)) !== undefined);
      assert.ok(!existsSync(join(dir, "registry.json")));
    } finally {
      sleeper.kill("SIGKILL");
    }
    // The real registry, now unrecorded, still holds its port: start refuses rather than doubling.
    const busy = await sandkube("start", "--dir", dir, "--address", record.address);
    assert.equal(busy.exitCode, 1);
    assert.match(busy.stderr, new RegExp(`${record.address} is in use by another process`));
    assert.ok(!existsSync(join(dir, "registry.json")), "a refused start writes no record");
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 50 && !(await gone(pid, record.config)); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    started.delete(pid);

    // Its pid gone entirely: start forgets the record and starts afresh.
    writeFileSync(join(dir, "registry.json"), JSON.stringify(record));
    const fresh = await startIn(dir);
    assert.notEqual(fresh.pid, pid);
    assert.equal(readRecord(dir).pid, fresh.pid);
    const purge = await sandkube("stop", "--dir", dir, "--purge");
    assert.equal(purge.exitCode, 0, purge.stderr);
    started.delete(fresh.pid);
    assert.ok(!existsSync(dir), "--purge removes data, config and log, then the empty dir");
  });

  test("--htpasswd: /v2/ asks for a login", async () => {
    const dir = join(scratch, "auth");
    const htpasswd = join(scratch, "htpasswd");
    await writeHtpasswd(htpasswd, [{ username: "alice", password: "s3cret pass" }]);
    const { address, pid } = await startIn(dir, "--htpasswd", htpasswd);
    assert.equal(await v2Status(address), 401);
    const status = await sandkube("status", "--dir", dir);
    assert.match(status.stdout, new RegExp(`login: htpasswd ${htpasswd}`));
    assert.equal((await sandkube("stop", "--dir", dir)).exitCode, 0);
    started.delete(pid);
  });

  test("refusals: a missing htpasswd, and a start that fails leaves no record and no process", async () => {
    const dir = join(scratch, "refused");
    const missing = await sandkube("start", "--dir", dir, "--htpasswd", join(scratch, "nope"));
    assert.equal(missing.exitCode, 2);
    assert.match(missing.stderr, /--htpasswd .*nope does not exist/);

    const cert = join(scratch, "bad-cert.pem");
    writeFileSync(cert, "not a certificate\n");
    const address = `127.0.0.1:${await freeLoopbackPort()}`;
    const bad = await sandkube(
      "start",
      "--dir",
      dir,
      "--address",
      address,
      "--tls-cert",
      cert,
      "--tls-key",
      cert,
    );
    assert.equal(bad.exitCode, 1);
    assert.match(
      bad.stderr,
      /sandkube: registry start: docker-registry exited \(exit status \d+\) before answering/,
    );
    assert.ok(!existsSync(join(dir, "registry.json")), "no record of a failed start");
    const leftover = await runCommand(["pgrep", "-f", join(dir, "config.yml")]);
    assert.equal(leftover.stdout.trim(), "", "no docker-registry left for the failed start");
  });
});
