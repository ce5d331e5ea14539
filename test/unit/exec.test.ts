import { test } from "node:test";
import assert from "node:assert/strict";
import { CommandFailedError, ensureSuccess, runCommand } from "../../src/common/exec.js";

test("a failing command is data: exit status and stderr are kept", async () => {
  const result = await runCommand(["sh", "-c", "echo out; echo oops >&2; exit 7"]);
  assert.equal(result.exitCode, 7);
  assert.equal(result.stdout, "out\n");
  assert.equal(result.stderr, "oops\n");
  assert.equal(result.failure, undefined);
  assert.throws(
    () => ensureSuccess(result),
    (error: unknown) => {
      assert.ok(error instanceof CommandFailedError);
      assert.match(error.message, /sh -c .* failed \(exit status 7\): oops/);
      return true;
    },
  );
});

test("a missing program reports ENOENT with status 127", async () => {
  const result = await runCommand(["/nonexistent/sandkube-no-such-binary"]);
  assert.equal(result.failure, "ENOENT");
  assert.equal(result.exitCode, 127);
});

test("a hung command is killed at its timeout and says so", async () => {
  const result = await runCommand(["sleep", "30"], { timeoutMs: 200 });
  assert.equal(result.failure, "TIMEOUT");
  assert.notEqual(result.exitCode, 0);
});

test("input reaches the child's stdin", async () => {
  const result = await runCommand(["cat"], { input: "hello" });
  assert.equal(result.stdout, "hello");
});
