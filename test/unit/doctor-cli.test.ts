import { test } from "node:test";
import assert from "node:assert/strict";
import { parseDoctorArgs, probeOptionsFromEnvironment } from "../../src/cli/doctor.js";
import { renderTable, wrap } from "../../src/cli/table.js";
import { UsageError } from "../../src/cli/usage-error.js";

test("doctor arguments: defaults", () => {
  assert.deepEqual(parseDoctorArgs([]), {
    json: false,
    dataDir: "/var/lib/sandkube",
    record: null,
    help: false,
  });
});

test("doctor arguments: every flag, spaced and with =", () => {
  assert.deepEqual(parseDoctorArgs(["--json", "--data-dir", "/srv/sk", "--record=/tmp/t.json"]), {
    json: true,
    dataDir: "/srv/sk",
    record: "/tmp/t.json",
    help: false,
  });
  assert.equal(parseDoctorArgs(["--data-dir=/a/b/../c"]).dataDir, "/a/c");
  assert.equal(parseDoctorArgs(["-h"]).help, true);
});

test("doctor arguments: unknown flags and missing values are UsageErrors naming the argument", () => {
  assert.throws(
    () => parseDoctorArgs(["--jsn"]),
    (e: unknown) => e instanceof UsageError && e.exitCode === 2 && e.message.includes('"--jsn"'),
  );
  assert.throws(
    () => parseDoctorArgs(["--data-dir"]),
    (e: unknown) => e instanceof UsageError && e.message.includes("--data-dir needs a value"),
  );
  assert.throws(() => parseDoctorArgs(["--record="]), UsageError);
  assert.throws(
    () => parseDoctorArgs(["--json=yes"]),
    (e: unknown) =>
      e instanceof UsageError && e.message === 'doctor: --json takes no value (got "--json=yes").',
  );
});

test("probe options keep only proxy and mirror variables from the environment", () => {
  const options = probeOptionsFromEnvironment("/d", {
    PATH: "/a:/b",
    HTTPS_PROXY: "http://proxy:3128",
    SECRET_TOKEN: "nope",
    SANDKUBE_LAB_DIR: "/lab",
  });
  assert.deepEqual(options, {
    dataDir: "/d",
    searchPath: ["/a", "/b"],
    binarySearch: { labBinDir: "/lab/bin", labCniDir: "/lab/cni" },
    env: { HTTPS_PROXY: "http://proxy:3128" },
  });
});

test("wrap breaks at spaces and splits words longer than the width", () => {
  assert.deepEqual(wrap("one two three", 7), ["one two", "three"]);
  assert.deepEqual(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
  assert.deepEqual(wrap("", 4), [""]);
});

test("renderTable pads columns and wraps long cells onto continuation lines", () => {
  const text = renderTable(
    ["a", "b"],
    [
      ["x", "short"],
      ["yy", "a longer cell"],
    ],
    [10, 8],
  );
  assert.equal(text, ["a   b", "--  --------", "x   short", "yy  a longer", "    cell"].join("\n"));
});
