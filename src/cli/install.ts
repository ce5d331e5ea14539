/**
 * `sandkube install [--bin-dir DIR] [--cache-dir DIR] [--only a,b] [--json]`: gets every binary a
 * node runs into sandkube's cache, one progress line per component on stderr.
 */
import { resolve } from "node:path";
import type { Command } from "./main.js";
import { UsageError } from "./usage-error.js";
import { installCacheDir } from "../install/cache.js";
import { installMissing } from "../install/install.js";
import { selectBinaries } from "../install/resolve-plan.js";
import { PRODUCT_BINARIES } from "../install/components.js";

export const INSTALL_USAGE =
  "usage: sandkube install [--bin-dir DIR] [--cache-dir DIR] [--only NAME,NAME] [--json]";

export interface InstallArgs {
  readonly binDir?: string;
  readonly cacheDir: string;
  readonly only?: readonly string[];
  readonly json: boolean;
  readonly help: boolean;
}

function knownNames(): string {
  return [...new Set(PRODUCT_BINARIES.map((binary) => binary.component))].join(", ");
}

/** Pure: argv -> options, or a UsageError naming the bad argument. */
export function parseInstallArgs(args: readonly string[], env: NodeJS.ProcessEnv): InstallArgs {
  let binDir: string | undefined;
  let cacheDir = installCacheDir(env);
  let only: string[] | undefined;
  let json = false;
  let help = false;
  for (let index = 0; index < args.length; index++) {
    const arg = args[index] ?? "";
    const equals = arg.indexOf("=");
    const flag = equals === -1 ? arg : arg.slice(0, equals);
    const inline = equals === -1 ? undefined : arg.slice(equals + 1);
    const value = (): string => {
      const given = inline ?? args[++index];
      if (given === undefined || given === "" || (inline === undefined && given.startsWith("--")))
        throw new UsageError(`install: ${flag} needs a value. ${INSTALL_USAGE}`);
      return given;
    };
    switch (flag) {
      case "--bin-dir":
        binDir = resolve(value());
        break;
      case "--cache-dir":
        cacheDir = resolve(value());
        break;
      case "--only": {
        const names = value()
          .split(",")
          .map((name) => name.trim())
          .filter(Boolean);
        const { unknown } = selectBinaries(names);
        if (names.length === 0 || unknown.length > 0)
          throw new UsageError(
            `install: --only: unknown ${unknown.length === 0 ? "(empty list)" : unknown.join(", ")}; ` +
              `name components (${knownNames()}) or their binaries`,
          );
        only = [...(only ?? []), ...names];
        break;
      }
      case "--json":
        if (inline !== undefined)
          throw new UsageError(`install: --json takes no value. ${INSTALL_USAGE}`);
        json = true;
        break;
      case "--help":
      case "-h":
        help = true;
        break;
      default:
        throw new UsageError(`install: unknown argument "${arg}". ${INSTALL_USAGE}`);
    }
  }
  return {
    ...(binDir === undefined ? {} : { binDir }),
    cacheDir,
    ...(only === undefined ? {} : { only }),
    json,
    help,
  };
}

export const install: Command = async (args) => {
  const options = parseInstallArgs(args, process.env);
  if (options.help) {
    process.stdout.write(
      `${INSTALL_USAGE}\n\nGets etcd, the Kubernetes control plane, kubelet, kube-proxy, kubectl, containerd, ` +
        `runc, crictl, the CNI plugins, CoreDNS, local-path-provisioner and helm into the cache (default ${installCacheDir(process.env)}; ` +
        `SANDKUBE_CACHE_DIR moves it). See docs/install.md.\n`,
    );
    return 0;
  }
  const progress = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  progress(`install: cache ${options.cacheDir}`);
  const { resolution, outcomes } = await installMissing({
    ...(options.binDir === undefined ? {} : { binDir: options.binDir }),
    ...(options.only === undefined ? {} : { only: options.only }),
    env: process.env,
    cacheDir: options.cacheDir,
    onProgress: progress,
  });
  const ok = resolution.missing.length === 0;
  progress(
    ok
      ? `install: all ${resolution.found.length} binaries present`
      : `install: FAILED, still missing ${resolution.missing.join(", ")}`,
  );
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify(
        {
          ok,
          cacheDir: options.cacheDir,
          binaries: resolution.found,
          missing: resolution.missing,
          rejected: resolution.rejected,
          outcomes,
        },
        null,
        2,
      )}\n`,
    );
  }
  return ok ? 0 : 1;
};
