import type { ProbeIO } from "./io.js";

/** One line of /proc/self/mountinfo (proc(5)). */
export interface MountEntry {
  readonly mountId: number;
  readonly parentId: number;
  readonly root: string;
  readonly mountPoint: string;
  readonly options: string;
  /** Optional fields such as `shared:1` or `master:3`; empty means private. */
  readonly optionalFields: readonly string[];
  readonly fsType: string;
  readonly source: string;
  readonly superOptions: string;
}

// mountinfo escapes space, tab, newline and backslash as octal.
function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCharCode(Number.parseInt(octal, 8)),
  );
}

export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const fields = line.split(" ");
    const separator = fields.indexOf("-", 6);
    if (separator < 0 || fields.length < separator + 3) continue;
    entries.push({
      mountId: Number.parseInt(fields[0] ?? "", 10),
      parentId: Number.parseInt(fields[1] ?? "", 10),
      root: unescapeOctal(fields[3] ?? ""),
      mountPoint: unescapeOctal(fields[4] ?? ""),
      options: fields[5] ?? "",
      // Older gVisor writes two spaces before "-" when there are none, leaving an empty field.
      optionalFields: fields.slice(6, separator).filter((field) => field !== ""),
      fsType: fields[separator + 1] ?? "",
      source: unescapeOctal(fields[separator + 2] ?? ""),
      superOptions: fields[separator + 3] ?? "",
    });
  }
  return entries;
}

/** The mount that holds `path`: the last-mounted entry with the longest matching mount point. */
export function mountContaining(
  mounts: readonly MountEntry[],
  path: string,
): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const mount of mounts) {
    const point = mount.mountPoint;
    const inside =
      point === "/" || path === point || path.startsWith(point.endsWith("/") ? point : `${point}/`);
    if (!inside) continue;
    if (best === undefined || point.length >= best.mountPoint.length) best = mount;
  }
  return best;
}

export async function readMountinfo(io: ProbeIO): Promise<MountEntry[] | null> {
  const text = await io.read("/proc/self/mountinfo");
  return text.ok ? parseMountinfo(text.value) : null;
}
