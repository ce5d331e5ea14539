/**
 * Records the network, iptables, binaries and registry probes as ProbeIO transcripts, the
 * fixtures of test/unit/probe-{network,iptables,binaries,registries}.test.ts. As root:
 *
 *   npm run build && node dist/test/host/record-net-fixtures.js --all
 *
 * records this machine's kernel (net-host-kernel), then runs itself inside the lab's current
 * runsc (net-gvisor) and its 2023 runsc (net-gvisor-2023). One machine at a time:
 *
 *   node dist/test/host/record-net-fixtures.js NAME "DESCRIPTION" [-]
 *
 * where `-` prints the transcript instead of writing test/fixtures/net-NAME.transcript.json (the
 * tree is read-only inside `runsc do`). The probes' facts go to stderr, for a human to read.
 */
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { ensureSuccess, runCommand } from "../../src/common/exec.js";
import { recordingIO, systemIO, type Transcript } from "../../src/probe/io.js";
import { probeNetwork } from "../../src/probe/network.js";
import { probeIptables } from "../../src/probe/iptables.js";
import { probeBinaries } from "../../src/probe/binaries.js";
import { probeRegistries } from "../../src/probe/registries.js";
import { labBinary } from "../../lab/paths.js";
import {
  fixturePath,
  RECORDED_DIRECT_ENV,
  RECORDED_LAB_DIRS,
  RECORDED_PROXY_ENV,
  RECORDED_SEARCH_PATH,
} from "../unit/net-fixtures.js";

const SANDBOXES = [
  {
    name: "gvisor",
    runsc: "runsc",
    description:
      "runsc built from gvisor.dev/gvisor v0.0.0-20260905035102-160fafc42237 (uname 4.19.0-gvisor)",
  },
  {
    name: "gvisor-2023",
    runsc: "runsc-old",
    description:
      "runsc built from gvisor.dev/gvisor v0.0.0-20230715022000-fd277b20b8db (uname 4.4.0, before cap_last_cap)",
  },
] as const;

async function record(name: string, description: string): Promise<string> {
  const { io, transcript } = recordingIO(systemIO());
  const facts = {
    network: await probeNetwork(io),
    iptables: await probeIptables(io),
    binaries: await probeBinaries(io, RECORDED_SEARCH_PATH, RECORDED_LAB_DIRS),
    registriesDirect: await probeRegistries(io, RECORDED_DIRECT_ENV),
    registriesProxied: await probeRegistries(io, RECORDED_PROXY_ENV),
  };
  process.stderr.write(`${JSON.stringify(facts, null, 2)}\n`);
  const recorded: Transcript = { ...transcript(), description: `net-${name}: ${description}` };
  return `${JSON.stringify(recorded, null, 2)}\n`;
}

async function main(): Promise<void> {
  const [name, description, output] = process.argv.slice(2);
  if (name === "--all") {
    await writeFile(
      fixturePath("net-host-kernel"),
      await record("host-kernel", "Firecracker VM, Debian 12 userland, Linux 6.18 kernel, root"),
    );
    for (const sandbox of SANDBOXES) {
      // `runsc do` shows the host's / read-only: the transcript comes back on stdout.
      const result = ensureSuccess(
        await runCommand(
          [
            labBinary(sandbox.runsc),
            "--network=none",
            "--net-raw",
            "do",
            "--",
            process.execPath,
            fileURLToPath(import.meta.url),
            sandbox.name,
            `${sandbox.description}; --network=none --net-raw do, host / read-only under an overlay, root in the sandbox`,
            "-",
          ],
          { timeoutMs: 300_000 },
        ),
      );
      await writeFile(fixturePath(`net-${sandbox.name}`), result.stdout);
    }
    return;
  }
  if (name === undefined || description === undefined) {
    throw new Error('usage: record-net-fixtures.js --all | NAME "DESCRIPTION" [-]');
  }
  const text = await record(name, description);
  if (output === "-") process.stdout.write(text);
  else await writeFile(fixturePath(`net-${name}`), text);
}

await main();
