/**
 * Wrapper modules: `go install pkg@version` refuses a module whose go.mod has replace or exclude
 * lines (cmd/go: "The go.mod file for the module providing named packages contains one or more
 * replace directives"). A module that requires the target builds it anyway, because go ignores
 * replace lines outside the main module; the wrapper carries its own, pointing at published
 * versions. Pure text in, text out.
 */

export interface ReplaceDirective {
  readonly from: string;
  readonly fromVersion?: string;
  readonly to: string;
  /** Absent when `to` is a local folder ("./staging/src/k8s.io/api", "../api"). */
  readonly toVersion?: string;
}

export interface GoModSummary {
  readonly module: string;
  readonly go?: string;
  readonly godebug: readonly string[];
  /** Required module path -> version. */
  readonly requires: ReadonlyMap<string, string>;
  readonly replaces: readonly ReplaceDirective[];
}

function stripComment(line: string): string {
  const at = line.indexOf("//");
  return (at === -1 ? line : line.slice(0, at)).trim();
}

function parseReplace(spec: string, lineNumber: number): ReplaceDirective {
  const [left, right] = spec.split("=>").map((side) => side.trim().split(/\s+/).filter(Boolean));
  if (
    !left ||
    !right ||
    left.length === 0 ||
    left.length > 2 ||
    right.length === 0 ||
    right.length > 2
  )
    throw new Error(`go.mod line ${lineNumber}: cannot read replace directive "${spec}"`);
  const [from, fromVersion] = left as [string, string | undefined];
  const [to, toVersion] = right as [string, string | undefined];
  return {
    from,
    to,
    ...(fromVersion === undefined ? {} : { fromVersion }),
    ...(toVersion === undefined ? {} : { toVersion }),
  };
}

/** Reads the directives a wrapper needs from a go.mod; ignores the rest (exclude, retract, tool). */
export function parseGoMod(text: string): GoModSummary {
  let module: string | undefined;
  let go: string | undefined;
  const godebug: string[] = [];
  const requires = new Map<string, string>();
  const replaces: ReplaceDirective[] = [];
  let block: string | undefined;
  text.split("\n").forEach((raw, index) => {
    const lineNumber = index + 1;
    const line = stripComment(raw);
    if (line === "") return;
    if (block !== undefined) {
      if (line === ")") {
        block = undefined;
        return;
      }
      addDirective(block, line, lineNumber);
      return;
    }
    const open = /^(\w+)\s*\($/.exec(line);
    if (open) {
      block = open[1];
      return;
    }
    const [verb, ...rest] = line.split(/\s+/);
    if (verb !== undefined) addDirective(verb, rest.join(" "), lineNumber);
  });
  if (module === undefined) throw new Error("go.mod has no module directive");
  return { module, ...(go === undefined ? {} : { go }), godebug, requires, replaces };

  function addDirective(verb: string, spec: string, lineNumber: number): void {
    switch (verb) {
      case "module":
        module = spec.replace(/^"|"$/g, "");
        break;
      case "go":
        go = spec;
        break;
      case "godebug":
        godebug.push(spec);
        break;
      case "require": {
        const [path, version] = spec.split(/\s+/);
        if (path === undefined || version === undefined)
          throw new Error(`go.mod line ${lineNumber}: cannot read require directive "${spec}"`);
        requires.set(path, version);
        break;
      }
      case "replace":
        replaces.push(parseReplace(spec, lineNumber));
        break;
      default:
        break;
    }
  }
}

export interface WrapperRequest {
  /** Module path of the wrapper itself. */
  readonly wrapperModule: string;
  readonly target: string;
  readonly version: string;
  /** The target's own go.mod, as `go mod download -json` left it in the module cache. */
  readonly targetGoMod: string;
  /** Published version standing in for a local-folder replace, or undefined if there is none. */
  readonly localReplacement: (modulePath: string) => string | undefined;
}

export interface WrapperGoMod {
  readonly text: string;
  /** Local-folder replaces dropped because the target does not require the module (guards). */
  readonly dropped: readonly string[];
}

function isLocalPath(path: string): boolean {
  return path.startsWith("./") || path.startsWith("../") || path.startsWith("/");
}

function formatReplace(replace: ReplaceDirective): string {
  const from =
    replace.fromVersion === undefined ? replace.from : `${replace.from} ${replace.fromVersion}`;
  const to = replace.toVersion === undefined ? replace.to : `${replace.to} ${replace.toVersion}`;
  return `${from} => ${to}`;
}

/**
 * The go.mod of a module that requires target@version and rewrites the target's replace lines:
 * module replacements are kept (the target chose those forks deliberately), local folders become
 * the published module at the version localReplacement names.
 */
export function wrapperGoMod(request: WrapperRequest): WrapperGoMod {
  const target = parseGoMod(request.targetGoMod);
  if (target.module !== request.target)
    throw new Error(
      `downloaded go.mod declares module ${target.module}, expected ${request.target}`,
    );
  const kept: ReplaceDirective[] = [];
  const dropped: string[] = [];
  for (const replace of target.replaces) {
    if (!isLocalPath(replace.to)) {
      kept.push(replace);
      continue;
    }
    const published = request.localReplacement(replace.from);
    if (published !== undefined) {
      kept.push({ from: replace.from, to: replace.from, toVersion: published });
    } else if (target.requires.has(replace.from)) {
      throw new Error(
        `${request.target}@${request.version} replaces required module ${replace.from} with local ` +
          `folder ${replace.to}, and no published version is known for it: add one to the ` +
          `component's localReplacement in src/install/components.ts`,
      );
    } else {
      dropped.push(replace.from);
    }
  }
  const lines = [
    "// Generated by sandkube (src/install/go-build.ts); rewritten on every build.",
    `module ${request.wrapperModule}`,
    "",
    // The main module's go line sets language version and GODEBUG defaults for the whole build.
    ...(target.go === undefined ? [] : [`go ${target.go}`, ""]),
    ...target.godebug.map((setting) => `godebug ${setting}`),
    ...(target.godebug.length === 0 ? [] : [""]),
    `require ${request.target} ${request.version}`,
  ];
  if (kept.length > 0)
    lines.push("", "replace (", ...kept.map((r) => `\t${formatReplace(r)}`), ")");
  return { text: `${lines.join("\n")}\n`, dropped };
}
