/** Splits text into lines no wider than `width`, breaking at spaces where it can. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const paragraph of text.split("\n")) {
    let line = "";
    for (const word of paragraph.split(" ")) {
      let rest = word;
      while (rest.length > width) {
        if (line !== "") {
          lines.push(line);
          line = "";
        }
        lines.push(rest.slice(0, width));
        rest = rest.slice(width);
      }
      if (line === "") line = rest;
      else if (line.length + 1 + rest.length <= width) line = `${line} ${rest}`;
      else {
        lines.push(line);
        line = rest;
      }
    }
    lines.push(line);
  }
  return lines;
}

/**
 * A plain-text table: each column as wide as its widest cell, capped at `maxWidths[i]`, with
 * longer cells wrapped onto continuation lines.
 */
export function renderTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  maxWidths: readonly number[],
): string {
  const widths = headers.map((header, i) =>
    Math.min(
      maxWidths[i] ?? 80,
      Math.max(header.length, ...rows.map((row) => (row[i] ?? "").length)),
    ),
  );
  const out: string[] = [];
  const emit = (cells: readonly string[]): void => {
    const wrapped = widths.map((width, i) => wrap(cells[i] ?? "", width));
    const height = Math.max(...wrapped.map((w) => w.length));
    for (let line = 0; line < height; line++) {
      out.push(
        wrapped
          .map((w, i) => (w[line] ?? "").padEnd(i === widths.length - 1 ? 0 : (widths[i] ?? 0)))
          .join("  ")
          .trimEnd(),
      );
    }
  };
  emit(headers);
  out.push(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows) emit(row);
  return out.join("\n");
}
