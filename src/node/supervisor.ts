import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, openSync, closeSync } from "node:fs";
import { dirname } from "node:path";
import { runCommand } from "../common/exec.js";
import type { ComponentName, ComponentSpec } from "./components.js";
import { stopOrder } from "./components.js";
import type { NodeLayout } from "./layout.js";
import { identify, sleep, terminate, type ProcessIdentity } from "./process-identity.js";
import { probeReadiness } from "./readiness.js";
import type { ComponentPhase, ComponentStatus, NodeState, SupervisorStatus } from "./state.js";
import { writeSupervisorStatus } from "./state.js";

/** Restart delays double from 1 s to 30 s; a run that lasted a minute resets them. */
export function restartDelayMs(consecutiveFailures: number): number {
  return Math.min(30_000, 1_000 * 2 ** Math.max(0, consecutiveFailures - 1));
}
const HEALTHY_RUN_MS = 60_000;

interface Running {
  readonly spec: ComponentSpec;
  phase: ComponentPhase;
  child: ChildProcess | null;
  identity: ProcessIdentity | null;
  restarts: number;
  consecutiveFailures: number;
  startedAt: number;
  lastExit: string | null;
  since: string;
  everReady: boolean;
}

export type SupervisorLog = (line: string) => void;

/**
 * Runs the node's components as its children, as k3s runs its parts: starts each once what it
 * needs is ready, restarts one that dies with backoff, and stops them in reverse order.
 */
export class Supervisor {
  private readonly components: Running[];
  private stopping = false;
  private statusDirty = true;
  private readonly self: ProcessIdentity;

  constructor(
    private readonly state: NodeState,
    private readonly layout: NodeLayout,
    private readonly log: SupervisorLog,
    self: ProcessIdentity,
    private readonly crictl: string | null,
  ) {
    this.self = self;
    const now = new Date().toISOString();
    this.components = state.components.map((spec) => ({
      spec,
      phase: "waiting",
      child: null,
      identity: null,
      restarts: 0,
      consecutiveFailures: 0,
      startedAt: 0,
      lastExit: null,
      since: now,
      everReady: false,
    }));
  }

  private find(name: ComponentName): Running | undefined {
    return this.components.find((c) => c.spec.name === name);
  }

  private setPhase(component: Running, phase: ComponentPhase): void {
    if (component.phase === phase) return;
    component.phase = phase;
    component.since = new Date().toISOString();
    this.statusDirty = true;
    this.log(`${component.spec.name}: ${phase}`);
  }

  private async start(component: Running): Promise<void> {
    const { spec } = component;
    mkdirSync(dirname(spec.logFile), { recursive: true });
    const fd = openSync(spec.logFile, "a");
    const [file, ...args] = spec.argv;
    if (file === undefined) throw new Error(`${spec.name}: empty command`);
    const child = spawn(file, args, {
      stdio: ["ignore", fd, fd],
      env: { ...process.env, ...spec.env },
    });
    closeSync(fd);
    component.child = child;
    component.startedAt = Date.now();
    this.setPhase(component, "starting");
    child.once("error", (error) => this.log(`${spec.name}: cannot start: ${error.message}`));
    child.once("exit", (code, signal) => this.onExit(component, child, code, signal));
    component.identity = child.pid === undefined ? null : ((await identify(child.pid)) ?? null);
    this.statusDirty = true;
  }

  private onExit(
    component: Running,
    child: ChildProcess,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    if (component.child !== child) return;
    component.child = null;
    component.identity = null;
    component.lastExit = signal !== null ? `signal ${signal}` : `exit status ${code ?? "?"}`;
    this.statusDirty = true;
    if (this.stopping) {
      this.setPhase(component, "stopped");
      return;
    }
    const ranFor = Date.now() - component.startedAt;
    component.consecutiveFailures = ranFor > HEALTHY_RUN_MS ? 1 : component.consecutiveFailures + 1;
    component.restarts += 1;
    const delay = restartDelayMs(component.consecutiveFailures);
    this.log(
      `${component.spec.name}: ${component.lastExit} after ${ranFor} ms; restarting in ${delay} ms`,
    );
    this.setPhase(component, "restarting");
    setTimeout(() => {
      if (!this.stopping && component.child === null) void this.start(component);
    }, delay);
  }

  private dependenciesReady(component: Running): boolean {
    return component.spec.after.every((name) => this.find(name)?.phase === "ready");
  }

  private async checkReadiness(component: Running): Promise<void> {
    const outcome = await probeReadiness(component.spec.readiness);
    if (!outcome.ready || component.phase !== "starting") return;
    for (const argv of component.spec.onReady) {
      const result = await runCommand(argv, { timeoutMs: 120_000 });
      if (result.exitCode !== 0) {
        this.log(`${component.spec.name}: ${argv.join(" ")} failed: ${result.stderr.trim()}`);
        return;
      }
    }
    component.everReady = true;
    component.consecutiveFailures = 0;
    this.setPhase(component, "ready");
  }

  status(): SupervisorStatus {
    return {
      supervisor: this.self,
      phase: this.stopping
        ? "stopping"
        : this.components.every((c) => c.phase === "ready")
          ? "running"
          : "starting",
      components: this.components.map((c): ComponentStatus => ({
        name: c.spec.name,
        phase: c.phase,
        process: c.identity,
        restarts: c.restarts,
        lastExit: c.lastExit,
        since: c.since,
      })),
    };
  }

  private async flushStatus(): Promise<void> {
    if (!this.statusDirty) return;
    this.statusDirty = false;
    await writeSupervisorStatus(this.layout, this.status());
  }

  /** Runs until stop() has finished. */
  async run(): Promise<void> {
    while (!this.stopping) {
      for (const component of this.components) {
        if (component.phase === "waiting" && this.dependenciesReady(component)) {
          await this.start(component);
        }
      }
      await Promise.all(
        this.components.filter((c) => c.phase === "starting").map((c) => this.checkReadiness(c)),
      );
      await this.flushStatus();
      await sleep(200);
    }
  }

  /**
   * Stops kubelet first, removes every pod while containerd still runs (so the CNI plugin's DEL
   * frees each address and link), then stops the rest in reverse start order.
   */
  async stop(removePods: boolean): Promise<void> {
    this.stopping = true;
    this.statusDirty = true;
    await this.flushStatus();
    for (const component of stopOrder(this.components.map((c) => c.spec))) {
      const running = this.find(component.name);
      if (running === undefined) continue;
      if (running.identity !== null) {
        this.setPhase(running, "stopping");
        await this.flushStatus();
        await terminate(running.identity, component.stopGraceMs);
      }
      this.setPhase(running, "stopped");
      if (component.name === "kubelet" && removePods && this.crictl !== null) {
        await this.removePods();
      }
      await this.flushStatus();
    }
  }

  private async removePods(): Promise<void> {
    const containerd = this.find("containerd");
    if (containerd?.phase !== "ready" || this.crictl === null) return;
    const endpoint = `unix://${this.layout.containerdSocket}`;
    const result = await runCommand(
      [this.crictl, "--runtime-endpoint", endpoint, "--timeout", "60s", "rmp", "--force", "--all"],
      { timeoutMs: 180_000 },
    );
    this.log(`removing pods: ${result.exitCode === 0 ? "done" : result.stderr.trim()}`);
  }
}

export function describeState(state: NodeState): string {
  return `${state.components.length} components for node ${state.config.nodeName}`;
}
