/**
 * The lab build's command line. Everything else it plans (layout, go commands, stamps, manifest)
 * is src/install/build-plan.ts, shared with `sandkube install`.
 */
import { UsageError } from "../src/cli/usage-error.js";

export interface BuildOptions {
  /** Component names to build, in table order; undefined means all. */
  readonly only?: readonly string[];
  readonly json: boolean;
  readonly jobs: 1 | 2;
  /** Ignore stamps and rebuild (the Go caches still make this quick). */
  readonly force: boolean;
}

export const BUILD_USAGE = `usage: npm run lab:build -- [--only NAME,NAME | --except NAME,NAME] [--jobs 1|2] [--force] [--json]`;

export function parseBuildArgs(
  argv: readonly string[],
  knownNames: readonly string[],
): BuildOptions {
  let only: string[] | undefined;
  let except: string[] | undefined;
  let json = false;
  let force = false;
  let jobs: 1 | 2 = 2;
  const valueOf = (index: number, flag: string): string => {
    const value = argv[index + 1];
    if (value === undefined || value.startsWith("--"))
      throw new UsageError(`${flag} needs a value\n${BUILD_USAGE}`);
    return value;
  };
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index] ?? "";
    const [flag, inline] = arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg];
    const take = (): string => inline ?? valueOf(index++, flag ?? arg);
    switch (flag) {
      case "--only":
      case "--except": {
        const names = take()
          .split(",")
          .map((name) => name.trim())
          .filter(Boolean);
        const unknown = names.filter((name) => !knownNames.includes(name));
        if (unknown.length > 0)
          throw new UsageError(
            `${flag}: unknown component ${unknown.join(", ")}; known: ${knownNames.join(", ")}`,
          );
        if (names.length === 0)
          throw new UsageError(`${flag} needs at least one name; known: ${knownNames.join(", ")}`);
        if (flag === "--only") only = [...(only ?? []), ...names];
        else except = [...(except ?? []), ...names];
        break;
      }
      case "--jobs": {
        const value = take();
        if (value !== "1" && value !== "2")
          throw new UsageError(`--jobs must be 1 or 2 (this machine has 2 cores), not "${value}"`);
        jobs = value === "1" ? 1 : 2;
        break;
      }
      case "--json":
        json = true;
        break;
      case "--force":
        force = true;
        break;
      case "--help":
      case "-h":
        throw new UsageError(BUILD_USAGE, 0);
      default:
        throw new UsageError(`unknown argument "${arg}"\n${BUILD_USAGE}`);
    }
  }
  if (only !== undefined && except !== undefined)
    throw new UsageError(`--only and --except cannot be combined\n${BUILD_USAGE}`);
  if (except !== undefined) only = knownNames.filter((name) => !except?.includes(name));
  return { ...(only === undefined ? {} : { only }), json, jobs, force };
}
