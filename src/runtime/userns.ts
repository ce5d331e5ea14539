import { RuntimeError } from "./errors.js";
import type { OciSpec } from "./spec.js";
import type { Syscalls } from "./syscalls.js";

/** One line of a uid_map or gid_map: `size` ids from `containerID` map to ids from `hostID`. */
export interface IdMapping {
  readonly containerID: number;
  readonly hostID: number;
  readonly size: number;
}

/** The kernel accepts at most 340 lines per map (user_namespaces(7), since Linux 4.15). */
export const MAX_MAP_LINES = 340;
const ID_LIMIT = 2 ** 32;

/**
 * The container's user namespace: a new one with the spec's maps (written from outside it), or one
 * joined by path. A joined namespace's maps are known when the path is `/proc/<pid>/ns/user`.
 */
export type UserNamespacePlan =
  | {
      readonly kind: "new";
      readonly uidMappings: readonly IdMapping[];
      readonly gidMappings: readonly IdMapping[];
    }
  | {
      readonly kind: "join";
      readonly path: string;
      readonly uidMappings?: readonly IdMapping[];
      readonly gidMappings?: readonly IdMapping[];
    };

function isId(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v < ID_LIMIT;
}

/**
 * Validates a uidMappings/gidMappings array. Each check is one the kernel makes when the map is
 * written (kernel/user_namespace.c map_write), caught here so the error names the field.
 */
export function parseIdMappings(raw: unknown, where: string): IdMapping[] {
  if (!Array.isArray(raw)) throw new RuntimeError(`config.json: ${where} must be an array`);
  if (raw.length === 0)
    throw new RuntimeError(`config.json: ${where} is empty; give at least one mapping`);
  if (raw.length > MAX_MAP_LINES)
    throw new RuntimeError(
      `config.json: ${where} has ${raw.length} mappings; the kernel accepts at most ${MAX_MAP_LINES}`,
    );
  const out: IdMapping[] = raw.map((m: unknown, i) => {
    const at = `${where}[${i}]`;
    if (typeof m !== "object" || m === null)
      throw new RuntimeError(`config.json: ${at} must be an object {containerID, hostID, size}`);
    const r = m as Record<string, unknown>;
    const { containerID, hostID, size } = r;
    if (!isId(containerID) || !isId(hostID))
      throw new RuntimeError(
        `config.json: ${at} needs containerID and hostID as integers from 0 to ${ID_LIMIT - 1}`,
      );
    if (!isId(size) || size === 0)
      throw new RuntimeError(`config.json: ${at}.size must be a positive integer`);
    if (containerID + size > ID_LIMIT || hostID + size > ID_LIMIT)
      throw new RuntimeError(
        `config.json: ${at} (containerID ${containerID}, hostID ${hostID}, size ${size}) runs past id ${ID_LIMIT - 1}`,
      );
    return { containerID, hostID, size };
  });
  for (let i = 0; i < out.length; i++)
    for (let j = 0; j < i; j++) {
      const a = out[j] as IdMapping;
      const b = out[i] as IdMapping;
      const overlap = (x: number, y: number): boolean => x < y + b.size && y < x + a.size;
      if (overlap(a.containerID, b.containerID) || overlap(a.hostID, b.hostID))
        throw new RuntimeError(
          `config.json: ${where}[${i}] overlaps ${where}[${j}] (container or host ranges); the kernel refuses overlapping mappings`,
        );
    }
  return out;
}

/** The maps as the kernel reads them from uid_map/gid_map: one "container host size" a line. */
export function mapText(maps: readonly IdMapping[]): string {
  return maps.map((m) => `${m.containerID} ${m.hostID} ${m.size}\n`).join("");
}

/** Parses /proc/<pid>/uid_map text. */
export function parseMapText(text: string): IdMapping[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .map((l) => {
      const [containerID, hostID, size] = l.split(/\s+/).map(Number);
      return { containerID: containerID ?? 0, hostID: hostID ?? 0, size: size ?? 0 };
    });
}

export function isMapped(id: number, maps: readonly IdMapping[]): boolean {
  return maps.some((m) => id >= m.containerID && id < m.containerID + m.size);
}

function sameMaps(a: readonly IdMapping[], b: readonly IdMapping[]): boolean {
  const key = (m: readonly IdMapping[]): string =>
    [...m]
      .sort((x, y) => x.containerID - y.containerID)
      .map((x) => `${x.containerID}:${x.hostID}:${x.size}`)
      .join(",");
  return key(a) === key(b);
}

/**
 * The spec's user namespace, validated: mappings without a user namespace, a new namespace without
 * mappings, container root or the process's ids left unmapped are all refused before anything is
 * created (the same rules as runc's libcontainer/configs/validate and specconv).
 */
export function planUserNamespace(sys: Syscalls, spec: OciSpec): UserNamespacePlan | undefined {
  const linux = spec.linux;
  const ns = linux?.namespaces?.find((n) => n.type === "user");
  const hasMaps = linux?.uidMappings !== undefined || linux?.gidMappings !== undefined;
  if (ns === undefined) {
    if (hasMaps)
      throw new RuntimeError(
        'config.json: linux.uidMappings/gidMappings are set but linux.namespaces has no user namespace; add {"type": "user"} or remove the mappings',
      );
    return undefined;
  }
  if (hasMaps && (linux?.uidMappings === undefined || linux.gidMappings === undefined))
    throw new RuntimeError(
      "config.json: a user namespace needs both linux.uidMappings and linux.gidMappings",
    );
  const given = hasMaps
    ? {
        uid: parseIdMappings(linux?.uidMappings, "linux.uidMappings"),
        gid: parseIdMappings(linux?.gidMappings, "linux.gidMappings"),
      }
    : undefined;
  let plan: UserNamespacePlan;
  if (ns.path === undefined) {
    if (!given)
      throw new RuntimeError(
        "config.json: a new user namespace needs linux.uidMappings and linux.gidMappings (or a path to join)",
      );
    plan = { kind: "new", uidMappings: given.uid, gidMappings: given.gid };
  } else {
    const known = joinedMaps(sys, ns.path);
    // containerd passes both the pod's namespace path and its maps (runc's specconv tolerates that
    // when they match, as here).
    if (
      given !== undefined &&
      known !== undefined &&
      (!sameMaps(given.uid, known.uid) || !sameMaps(given.gid, known.gid))
    )
      throw new RuntimeError(
        `config.json: linux.uidMappings/gidMappings differ from the maps of the user namespace to join (${ns.path}); give only the path, or the namespace's own maps`,
      );
    const maps = known ?? given;
    plan =
      maps === undefined
        ? { kind: "join", path: ns.path }
        : { kind: "join", path: ns.path, uidMappings: maps.uid, gidMappings: maps.gid };
  }
  if (plan.uidMappings !== undefined && plan.gidMappings !== undefined) {
    if (!isMapped(0, plan.uidMappings) || !isMapped(0, plan.gidMappings))
      throw new RuntimeError(
        "config.json: the user namespace does not map container uid/gid 0; the init sets up the container as root there, so map container id 0",
      );
    const user = spec.process?.user;
    if (user !== undefined) {
      if (!isMapped(user.uid, plan.uidMappings))
        throw new RuntimeError(
          `config.json: process.user.uid ${user.uid} is not mapped by the user namespace's uid map`,
        );
      for (const gid of [user.gid, ...(user.additionalGids ?? [])])
        if (!isMapped(gid, plan.gidMappings))
          throw new RuntimeError(
            `config.json: process.user gid ${gid} is not mapped by the user namespace's gid map`,
          );
    }
  }
  return plan;
}

/** The maps of a namespace given as /proc/<pid>/ns/user (what containerd passes), else unknown. */
function joinedMaps(
  sys: Syscalls,
  path: string,
): { uid: IdMapping[]; gid: IdMapping[] } | undefined {
  const m = /^\/proc\/(\d+|self)\/ns\/user$/.exec(path);
  if (m === null) return undefined;
  try {
    return {
      uid: parseMapText(sys.readFile(`/proc/${m[1]}/uid_map`)),
      gid: parseMapText(sys.readFile(`/proc/${m[1]}/gid_map`)),
    };
  } catch {
    throw new RuntimeError(
      `config.json: user namespace ${path} cannot be joined: its process is gone`,
    );
  }
}
