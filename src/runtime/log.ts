import { appendFileSync } from "node:fs";

export type LogLevel = "debug" | "info" | "warning" | "error";

export interface LogRecord {
  readonly level: LogLevel;
  readonly msg: string;
  readonly time: string;
}

/**
 * The runtime's log. containerd's shim reads --log as a stream of JSON values and reports the `msg`
 * of the last "error" record (runtime-contract.md), so every line is one JSON object.
 */
export interface Logger {
  warn(msg: string): void;
  error(msg: string): void;
  info(msg: string): void;
}

export function formatRecord(
  level: LogLevel,
  msg: string,
  time: Date,
  format: "json" | "text",
): string {
  if (format === "text")
    return `time="${time.toISOString()}" level=${level} msg=${JSON.stringify(msg)}\n`;
  const record: LogRecord = { level, msg, time: time.toISOString() };
  return `${JSON.stringify(record)}\n`;
}

/** Writes records to the --log file, or to stderr when none was given (as runc does). */
export function fileLogger(
  path: string | undefined,
  format: "json" | "text",
  clock: () => Date = () => new Date(),
): Logger {
  const write = (level: LogLevel, msg: string): void => {
    const line = formatRecord(level, msg, clock(), format);
    try {
      if (path === undefined) process.stderr.write(line);
      else appendFileSync(path, line);
    } catch {
      process.stderr.write(line);
    }
  };
  return {
    warn: (msg) => write("warning", msg),
    error: (msg) => write("error", msg),
    info: (msg) => write("info", msg),
  };
}

/** Collects records in memory; for unit tests. */
export function memoryLogger(): Logger & { records: { level: LogLevel; msg: string }[] } {
  const records: { level: LogLevel; msg: string }[] = [];
  return {
    records,
    warn: (msg) => void records.push({ level: "warning", msg }),
    error: (msg) => void records.push({ level: "error", msg }),
    info: (msg) => void records.push({ level: "info", msg }),
  };
}
