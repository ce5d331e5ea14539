#!/usr/bin/env bun
import { hostCniIO } from "./io.js";
import { runPlugin } from "./plugin.js";

/**
 * sandkube-cni: the CNI plugin containerd runs for every pod's network (docs/cni.md). Compiled with
 * Bun into one executable (npm run build:cni), because it starts once per pod ADD and DEL.
 */

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

const outcome = await runPlugin(process.env, await readStdin(), hostCniIO);
process.stdout.write(outcome.stdout);
process.exitCode = outcome.exitCode;
