import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect } from "node:net";
import type { Readiness } from "./components.js";

export interface ProbeOutcome {
  readonly ready: boolean;
  readonly detail: string;
}

function socketAnswers(path: string, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const socket = connect(path);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ ready: false, detail: `no answer on ${path}` });
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.end();
      resolve({ ready: true, detail: `${path} accepts connections` });
    });
    socket.once("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ ready: false, detail: `${path}: ${error.code ?? error.message}` });
    });
  });
}

function httpGet(readiness: Exclude<Readiness, { kind: "unix-socket" }>, timeoutMs: number) {
  return new Promise<ProbeOutcome>((resolve) => {
    const done = (outcome: ProbeOutcome) => resolve(outcome);
    const onResponse = (response: import("node:http").IncomingMessage) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => {
        const status = response.statusCode ?? 0;
        const expect = readiness.kind === "http" ? readiness.expect : undefined;
        const ok = status === 200 && (expect === undefined || body.includes(expect));
        done({ ready: ok, detail: `${readiness.url}: ${status} ${body.trim().slice(0, 200)}` });
      });
    };
    const request =
      readiness.kind === "https"
        ? httpsRequest(
            readiness.url,
            {
              timeout: timeoutMs,
              // Controller-manager and scheduler serve /healthz with a self-signed certificate
              // they make at start; without a client certificate only the path is checked.
              rejectUnauthorized: readiness.client !== undefined,
              ...(readiness.client === undefined
                ? {}
                : {
                    ca: readFileSync(readiness.client.ca),
                    cert: readFileSync(readiness.client.cert),
                    key: readFileSync(readiness.client.key),
                  }),
            },
            onResponse,
          )
        : httpRequest(readiness.url, { timeout: timeoutMs }, onResponse);
    request.on("timeout", () => request.destroy(new Error("timed out")));
    request.on("error", (error: NodeJS.ErrnoException) =>
      done({ ready: false, detail: `${readiness.url}: ${error.code ?? error.message}` }),
    );
    request.end();
  });
}

/** One readiness check; never throws. */
export async function probeReadiness(
  readiness: Readiness,
  timeoutMs = 2_000,
): Promise<ProbeOutcome> {
  try {
    if (readiness.kind === "unix-socket") return await socketAnswers(readiness.path, timeoutMs);
    return await httpGet(readiness, timeoutMs);
  } catch (error) {
    return { ready: false, detail: error instanceof Error ? error.message : String(error) };
  }
}
