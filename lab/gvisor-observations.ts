/**
 * The scenarios (lab/gvisor-scenarios/*.sh) write one `key<TAB>value` line per observation. A value
 * may span lines (an error message quoted whole); continuation lines have no tab-free key, so they
 * are joined to the observation before them.
 */
export type Observations = ReadonlyMap<string, readonly string[]>;

export function parseObservations(text: string): Observations {
  const found = new Map<string, string[]>();
  let last: string[] | undefined;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const tab = line.indexOf("\t");
    const key = tab > 0 ? line.slice(0, tab) : "";
    if (key !== "" && !/\s/.test(key)) {
      const values = found.get(key) ?? [];
      values.push(line.slice(tab + 1));
      found.set(key, values);
      last = values;
    } else if (last !== undefined && last.length > 0) {
      last[last.length - 1] = `${last[last.length - 1]}\n${line}`;
    }
  }
  return found;
}

/** The single value of `key`, or undefined; several values are joined so a test sees them all. */
export function observed(observations: Observations, key: string): string | undefined {
  const values = observations.get(key);
  return values === undefined ? undefined : values.join("\n");
}
