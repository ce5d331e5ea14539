import assert from "node:assert/strict";
import { test } from "node:test";
import {
  InvalidReferenceError,
  normalizeImageReference,
  parseImageReference,
} from "../../src/images/reference.js";

test("references are normalized as the CRI plugin looks them up", () => {
  assert.equal(normalizeImageReference("busybox"), "docker.io/library/busybox:latest");
  assert.equal(normalizeImageReference("busybox:1.36"), "docker.io/library/busybox:1.36");
  assert.equal(normalizeImageReference("me/app:v1"), "docker.io/me/app:v1");
  assert.equal(
    normalizeImageReference("registry.k8s.io/pause:3.10.2-sandkube"),
    "registry.k8s.io/pause:3.10.2-sandkube",
  );
  assert.equal(normalizeImageReference("localhost/app"), "localhost/app:latest");
  assert.equal(
    normalizeImageReference("localhost:5000/a/b_c__d-e.f:t"),
    "localhost:5000/a/b_c__d-e.f:t",
  );
  assert.equal(normalizeImageReference("[::1]:5000/app:x"), "[::1]:5000/app:x");
  const digest = `sha256:${"ab".repeat(32)}`;
  assert.deepEqual(parseImageReference(`busybox@${digest}`), {
    domain: "docker.io",
    path: "library/busybox",
    tag: null,
    digest,
  });
});

test("invalid references are refused with the reason", () => {
  const cases: [string, RegExp][] = [
    ["", /empty/],
    ["busy box", /whitespace/],
    ["BusyBox", /lowercase/],
    ["busybox:", /tag ""/],
    ["busybox:-x", /tag "-x"/],
    [`busybox:${"x".repeat(129)}`, /tag/],
    ["a//b", /empty/],
    ["busybox@sha256:xyz", /not a digest/],
    ["my_host.io:port/app", /registry host/],
    [`docker.io/${"a".repeat(250)}`, /longer than 255/],
    ["app-", /lowercase/],
  ];
  for (const [reference, reason] of cases) {
    assert.throws(
      () => parseImageReference(reference),
      (e: unknown) => e instanceof InvalidReferenceError && reason.test(e.message),
      `"${reference}" should be refused with ${reason}`,
    );
  }
});
