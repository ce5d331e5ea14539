/**
 * `node dist/src/verify/main.js [sandkube verify's options]`: `sandkube verify` as its own entry
 * point, so the `up` tests can run it where the cluster lives, inside runsc too. Exit status 0 when
 * no check failed, 1 when one did, 2 on bad usage.
 */
import { verifyCommand } from "../cli/verify.js";
import { UsageError } from "../cli/usage-error.js";

verifyCommand(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(error.exitCode);
    }
    process.stderr.write(
      `verify: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
