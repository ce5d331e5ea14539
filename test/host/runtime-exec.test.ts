import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  CONSOLE_RECEIVER,
  makeLab,
  readIfExists,
  runWithStdio,
  skipReason,
  stateOf,
  waitFor,
  type Lab,
} from "./runtime-support.js";

const reason =
  skipReason() ??
  (existsSync(CONSOLE_RECEIVER)
    ? undefined
    : `SKIPPED: ${CONSOLE_RECEIVER} missing; run npm run build:native`);

interface Receiver {
  readonly socket: string;
  readonly child: ChildProcess;
  output(): string;
  report(): string;
  done: Promise<number>;
}

/** containerd's side of --console-socket: receives the pty master and prints what the terminal shows. */
async function consoleReceiver(lab: Lab, name: string, input = ""): Promise<Receiver> {
  const socket = join(lab.dir, `${name}.sock`);
  let out = "";
  let err = "";
  const child = spawn(CONSOLE_RECEIVER, [socket, input], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const done = new Promise<number>((resolve) => child.on("exit", (code) => resolve(code ?? 128)));
  await waitFor(() => existsSync(socket), "console socket");
  return { socket, child, output: () => out, report: () => err, done };
}

function processJson(lab: Lab, name: string, p: Record<string, unknown>): string {
  const file = join(lab.dir, `${name}.json`);
  const caps = ["CAP_KILL"];
  writeFileSync(
    file,
    JSON.stringify({
      terminal: false,
      user: { uid: 0, gid: 0 },
      env: ["PATH=/bin"],
      cwd: "/",
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      noNewPrivileges: true,
      ...p,
    }),
  );
  return file;
}

describe("sandkube-runtime exec and terminals on the host kernel", { skip: reason }, () => {
  let lab: Lab;
  let initPid = 0;
  before(() => {
    lab = makeLab();
    lab.writeConfig({ args: ["sleep", "120"] });
    const log = join(lab.dir, "init.out");
    assert.equal(
      runWithStdio(
        lab,
        ["create", "--bundle", lab.bundle, "--pid-file", join(lab.dir, "init.pid"), "ex"],
        log,
        log,
      ),
      0,
      readIfExists(log),
    );
    assert.equal(lab.run(["start", "ex"]).status, 0);
    initPid = Number(readFileSync(join(lab.dir, "init.pid"), "utf8"));
  });
  after(() => {
    lab?.run(["delete", "--force", "ex"]);
    lab?.cleanup();
  });

  test("exec --detach writes the host pid and joins the container's namespaces", async () => {
    const p = processJson(lab, "detached", {
      args: ["sh", "-c", "echo in-ns-pid=$$; hostname; sleep 30"],
    });
    const out = join(lab.dir, "exec1.out");
    const pidFile = join(lab.dir, "exec1.pid");
    assert.equal(
      runWithStdio(
        lab,
        ["exec", "--process", p, "--detach", "--pid-file", pidFile, "ex"],
        out,
        out,
      ),
      0,
      readIfExists(out),
    );
    const pidText = readFileSync(pidFile, "utf8");
    assert.match(pidText, /^\d+$/);
    const pid = Number(pidText);
    await waitFor(() => /in-ns-pid=\d+\nsandkube-test\n/.test(readIfExists(out)), "exec output");
    const inNs = Number(/in-ns-pid=(\d+)/.exec(readIfExists(out))?.[1]);
    assert.notEqual(inNs, pid, "the process sees its pid in the container's pid namespace");
    for (const ns of ["pid", "net", "ipc", "uts", "mnt"])
      assert.equal(
        readlinkSync(`/proc/${pid}/ns/${ns}`),
        readlinkSync(`/proc/${initPid}/ns/${ns}`),
        ns,
      );
    const ps = JSON.parse(lab.run(["ps", "--format", "json", "ex"]).stdout) as number[];
    assert.ok(
      ps.includes(pid) && ps.includes(initPid),
      `ps lists init and the exec'd process: ${ps.join(",")}`,
    );
    process.kill(pid, "SIGKILL");
  });

  test("exec without --detach waits and returns the process's exit status", () => {
    const p = processJson(lab, "status", { args: ["sh", "-c", "exit 7"] });
    assert.equal(lab.run(["exec", "--process", p, "ex"]).status, 7);
  });

  test("exec with --console-socket sends exactly one fd: the master of a pty in the container", async () => {
    const rx = await consoleReceiver(lab, "exec-console");
    const p = processJson(lab, "tty", {
      terminal: true,
      args: ["sh", "-c", "tty; echo over-the-pty"],
    });
    const out = join(lab.dir, "exec-tty.out");
    const status = runWithStdio(
      lab,
      [
        "exec",
        "--process",
        p,
        "--console-socket",
        rx.socket,
        "--detach",
        "--pid-file",
        join(lab.dir, "tty.pid"),
        "ex",
      ],
      out,
      out,
    );
    assert.equal(status, 0, readIfExists(out));
    assert.equal(await rx.done, 0);
    assert.match(rx.report(), /^received \/dev\/pts\/\d+ fds=1\n$/);
    assert.match(rx.output(), /\/dev\/pts\/\d+\r?\nover-the-pty/);
    assert.equal(readIfExists(out), "", "a terminal process does not write to the runtime's stdio");
  });

  test("create with a terminal hands the pty over before create returns, and input reaches init", async () => {
    const rx = await consoleReceiver(lab, "init-console", "typed\n");
    lab.writeConfig({ terminal: true, args: ["sh", "-c", "read line; echo init-got-$line"] });
    const out = join(lab.dir, "tty-init.out");
    assert.equal(
      runWithStdio(
        lab,
        ["create", "--bundle", lab.bundle, "--console-socket", rx.socket, "ttyinit"],
        out,
        out,
      ),
      0,
      readIfExists(out),
    );
    await waitFor(
      () => /fds=1/.test(rx.report()),
      "pty received by the time create returned",
      2000,
    );
    assert.equal(stateOf(lab, "ttyinit")["status"], "created");
    assert.equal(lab.run(["start", "ttyinit"]).status, 0);
    assert.equal(await rx.done, 0);
    assert.match(rx.output(), /init-got-typed/);
    await waitFor(() => stateOf(lab, "ttyinit")["status"] === "stopped", "tty init exited");
    assert.equal(lab.run(["delete", "ttyinit"]).status, 0);
  });
});

if (reason) test("runtime exec", { skip: reason }, () => undefined);
