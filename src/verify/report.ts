/**
 * What `sandkube verify` prints: one line per check and a count, or with --json one object
 * (schema "sandkube.verify/v1", docs/verify.md). Pure.
 */
import type { CheckResult, CheckStatus } from "./cluster.js";

export interface VerifyReport {
  readonly namespace: string;
  readonly ok: boolean;
  readonly results: readonly CheckResult[];
}

export interface Counts {
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
}

export function countResults(results: readonly CheckResult[]): Counts {
  const n = (s: CheckStatus): number => results.filter((r) => r.status === s).length;
  return { passed: n("ok"), failed: n("failed"), skipped: n("skipped") };
}

const LABEL: Record<CheckStatus, string> = { ok: "ok  ", failed: "FAIL", skipped: "skip" };

/** The check's line: its first detail line, then for a failure " — blocker (remedy)". */
export function checkLine(r: CheckResult): string {
  const [headline = ""] = r.detail.split("\n");
  const why =
    r.status === "failed" && r.blocker !== undefined
      ? ` — ${r.blocker}${r.remedy === undefined ? "" : ` (${r.remedy})`}`
      : "";
  return `${LABEL[r.status]} ${r.id.padEnd(16)} ${(r.durationMs / 1000).toFixed(1).padStart(6)}s  ${headline}${why}`;
}

/**
 * One line per check, then "N passed, N failed, N skipped". A failed check's further detail lines
 * (pods, events) follow it, indented, so a red result can be read without running it again.
 */
export function formatReport(report: VerifyReport): string {
  return `${report.results.map(formatResult).join("")}${formatSummary(report)}`;
}

/** A check's line, and for a failure its further detail lines; what verify prints as it goes. */
export function formatResult(r: CheckResult): string {
  const more =
    r.status === "failed"
      ? r.detail
          .split("\n")
          .slice(1)
          .map((l) => `      ${l.trim()}\n`)
          .join("")
      : "";
  return `${checkLine(r)}\n${more}`;
}

export function formatSummary(report: VerifyReport): string {
  const c = countResults(report.results);
  return `${String(c.passed)} passed, ${String(c.failed)} failed, ${String(c.skipped)} skipped (namespace ${report.namespace})\n`;
}

export interface VerifyJson extends Counts {
  readonly schema: "sandkube.verify/v1";
  readonly namespace: string;
  readonly ok: boolean;
  readonly checks: readonly {
    readonly id: string;
    readonly status: CheckStatus;
    readonly detail: string;
    readonly blocker: string | null;
    readonly remedy: string | null;
    readonly durationMs: number;
  }[];
}

export function reportJson(report: VerifyReport): VerifyJson {
  return {
    schema: "sandkube.verify/v1",
    namespace: report.namespace,
    ok: report.ok,
    ...countResults(report.results),
    checks: report.results.map((r) => ({
      id: r.id,
      status: r.status,
      detail: r.detail,
      blocker: r.blocker ?? null,
      remedy: r.remedy ?? null,
      durationMs: r.durationMs,
    })),
  };
}
