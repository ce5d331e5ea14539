import type { CommandResult } from "../common/exec.js";
import type { Check } from "./check.js";
import { fromCommand, no, notRun } from "./check.js";
import type { ProbeIO } from "./io.js";

export const NAMESPACE_TYPES = [
  "user",
  "mnt",
  "pid",
  "net",
  "uts",
  "ipc",
  "cgroup",
  "time",
] as const;
export type NamespaceType = (typeof NAMESPACE_TYPES)[number];

export interface NamespaceFacts {
  readonly type: NamespaceType;
  /**
   * /proc/self/ns/<type> exists. Without it a successful unshare cannot be told apart from a kernel
   * that ignored the flag (gVisor accepts CLONE_NEWTIME with no time namespace to show for it).
   */
  readonly inProc: boolean;
  /** unshare(2) of this type, through util-linux `unshare`. */
  readonly create: Check;
  /**
   * setns(2) into a fresh namespace of this type by its /proc/PID/ns path, which is how runc joins
   * a pod's namespaces and how containerd's CNI netns is entered.
   */
  readonly joinByPath: Check;
}

interface UnshareSpelling {
  readonly flag: string;
  /** pid and time namespaces apply to children only, so a process must be forked into them. */
  readonly fork: boolean;
}

const SPELLING: Record<NamespaceType, UnshareSpelling> = {
  user: { flag: "--user", fork: false },
  mnt: { flag: "--mount", fork: false },
  pid: { flag: "--pid", fork: true },
  net: { flag: "--net", fork: false },
  uts: { flag: "--uts", fork: false },
  ipc: { flag: "--ipc", fork: false },
  cgroup: { flag: "--cgroup", fork: false },
  time: { flag: "--time", fork: true },
};

/**
 * Holds a new namespace open with a sleeping process, waits until that process is really in it,
 * then joins it with nsenter. `--preserve-credentials` because a fresh user namespace has no uid
 * map yet, so nsenter's default setuid(0) would fail with EINVAL for reasons unrelated to setns.
 * Exit 5: no /proc/self/ns entry of this type, so nothing can be joined by path.
 */
export const JOIN_SCRIPT = `
flag=$1; file=$2; fork=$3
[ -e "/proc/self/ns/$file" ] || { echo "/proc/self/ns/$file does not exist, so there is no path to join" >&2; exit 5; }
if [ "$fork" = fork ]; then
  unshare "$flag" --fork --kill-child sleep 30 </dev/null >/dev/null 2>&1 &
else
  unshare "$flag" --propagation unchanged sleep 30 </dev/null >/dev/null 2>&1 &
fi
holder=$!
target=
i=0
while :; do
  if ! kill -0 "$holder" 2>/dev/null; then wait "$holder"; echo "unshare exited with status $? before the namespace existed" >&2; exit 3; fi
  if [ "$fork" = fork ]; then
    for s in /proc/[0-9]*/stat; do
      read -r cpid _ _ cppid _ < "$s" 2>/dev/null || continue
      [ "$cppid" = "$holder" ] && target=$cpid
    done
  else
    target=$holder
  fi
  if [ -n "$target" ] && [ "$(readlink "/proc/$target/ns/$file" 2>/dev/null)" != "$(readlink "/proc/self/ns/$file")" ]; then break; fi
  i=$((i+1))
  if [ "$i" -gt 100 ]; then kill -9 "$holder"; echo "no process entered the new namespace" >&2; exit 4; fi
  sleep 0.05
done
nsenter "$flag=/proc/$target/ns/$file" --preserve-credentials true; rc=$?
kill -9 "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
exit $rc
`.trim();

export function unshareArgv(type: NamespaceType): string[] {
  const { flag, fork } = SPELLING[type];
  // --propagation unchanged: creating the namespace is the question here; making / private is a
  // separate fact (MountFacts.makePrivateInNewNamespace).
  const extra = fork
    ? ["--fork", "--kill-child"]
    : type === "mnt"
      ? ["--propagation", "unchanged"]
      : [];
  return ["unshare", flag, ...extra, "true"];
}

export function joinArgv(type: NamespaceType): string[] {
  const { flag, fork } = SPELLING[type];
  return ["sh", "-c", JOIN_SCRIPT, "sandkube-ns-join", flag, type, fork ? "fork" : "nofork"];
}

function missingTool(result: CommandResult, tool: string): Check | null {
  return result.failure === "ENOENT" ? notRun(`${tool} is not installed (util-linux)`) : null;
}

export async function probeNamespaces(
  io: ProbeIO,
  options: { readonly isRoot: boolean },
): Promise<NamespaceFacts[]> {
  const facts: NamespaceFacts[] = [];
  for (const type of NAMESPACE_TYPES) {
    const inProc = (await io.kind(`/proc/self/ns/${type}`)).ok;
    // An unprivileged user may still create user namespaces; every other type needs root here.
    if (!options.isRoot && type !== "user") {
      const skipped = notRun("not root: creating this namespace type needs CAP_SYS_ADMIN");
      facts.push({ type, inProc, create: skipped, joinByPath: skipped });
      continue;
    }
    const created = await io.run(unshareArgv(type));
    const create = missingTool(created, "unshare") ?? fromCommand(created);
    if (create.result !== "yes") {
      facts.push({
        type,
        inProc,
        create,
        joinByPath: notRun("the namespace could not be created"),
      });
      continue;
    }
    const joined = await io.run(joinArgv(type), { timeoutMs: 15_000 });
    const joinByPath =
      joined.exitCode === 5
        ? no("ENOENT", joined.stderr.trim())
        : fromCommand(joined, `nsenter ${SPELLING[type].flag}`);
    facts.push({ type, inProc, create, joinByPath });
  }
  return facts;
}
