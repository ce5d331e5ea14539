import type { FileKind, ProbeIO } from "./io.js";

/** kubelet's OOM watcher opens /dev/kmsg at start and exits if it cannot (blocker 2). */
export interface DevKmsgFacts {
  readonly exists: boolean;
  readonly kind: FileKind | null;
  /** errno when absent. */
  readonly code: string | null;
}

export async function probeDevKmsg(io: ProbeIO): Promise<DevKmsgFacts> {
  // Only stat: reading /dev/kmsg blocks waiting for new records, and needs no probing to know.
  const kind = await io.kind("/dev/kmsg");
  return kind.ok
    ? { exists: true, kind: kind.value, code: null }
    : { exists: false, kind: null, code: kind.code };
}
