import assert from "node:assert/strict";
import { test } from "node:test";
import { BenchUsageError, median, parsePullArgs, roundOrder } from "../../bench/pull.js";

test("pull bench: defaults, and every flag in both spellings", () => {
  assert.deepEqual(parsePullArgs([]), {
    json: false,
    gvisor: undefined,
    rounds: 5,
    layerMb: 8,
    inner: false,
    resultFile: undefined,
  });
  assert.deepEqual(
    parsePullArgs([
      "--json",
      "--gvisor=old",
      "--rounds",
      "3",
      "--layer-mb=2",
      "--inner",
      "--result",
      "/x.json",
    ]),
    { json: true, gvisor: "old", rounds: 3, layerMb: 2, inner: true, resultFile: "/x.json" },
  );
  assert.equal(parsePullArgs(["--gvisor"]).gvisor, "new");
});

test("pull bench: bad flags and values are usage errors that name them", () => {
  for (const [argv, pattern] of [
    [["--rounds=0"], /--rounds takes a whole number from 1 to 50, not "0"/],
    [["--rounds"], /--rounds takes a whole number/],
    [["--layer-mb=1.5"], /--layer-mb takes a whole number from 1 to 256/],
    [["--layer-mb=1000"], /--layer-mb/],
    [["--gvisor=newest"], /--gvisor takes new or old, not "newest"/],
    [["--seconds=3"], /unknown option "--seconds=3"/],
  ] as const) {
    assert.throws(
      () => parsePullArgs(argv),
      (e: unknown) => e instanceof BenchUsageError && pattern.test(e.message),
    );
  }
});

test("median: odd and even counts, unsorted input, none", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([0.7]), 0.7);
  assert.ok(Number.isNaN(median([])));
});

test("rounds take turns on which configuration pulls first", () => {
  assert.deepEqual(roundOrder(0), ["reference", "sandkube"]);
  assert.deepEqual(roundOrder(1), ["sandkube", "reference"]);
  assert.deepEqual(roundOrder(2), ["reference", "sandkube"]);
});
