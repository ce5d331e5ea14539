import type { Check } from "./check.js";
import { fromCommand, notRun } from "./check.js";
import type { ProbeIO } from "./io.js";

/** runc joins a fresh session keyring for every container unless told not to (NoNewKeyring). */
export interface KeyringFacts {
  /** keyctl(KEYCTL_JOIN_SESSION_KEYRING) with a new anonymous keyring. */
  readonly joinSessionKeyring: Check;
  /** add_key(2) into that session keyring; gVisor answers EACCES. */
  readonly addKey: Check;
}

export async function probeKeyrings(io: ProbeIO): Promise<KeyringFacts> {
  const joined = await io.run(["keyctl", "session", "-", "true"]);
  if (joined.failure === "ENOENT") {
    const missing = notRun("keyctl is not installed (Debian package keyutils)");
    return { joinSessionKeyring: missing, addKey: missing };
  }
  const joinSessionKeyring = fromCommand(joined, "keyctl session -");
  if (joinSessionKeyring.result !== "yes") {
    return { joinSessionKeyring, addKey: notRun("no session keyring to add to") };
  }
  const added = await io.run([
    "keyctl",
    "session",
    "-",
    "keyctl",
    "add",
    "user",
    "sandkube-probe",
    "x",
    "@s",
  ]);
  return { joinSessionKeyring, addKey: fromCommand(added, "keyctl add user sandkube-probe") };
}
