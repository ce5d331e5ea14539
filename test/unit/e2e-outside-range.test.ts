import { test } from "node:test";
import assert from "node:assert/strict";
import { unusedRange } from "../e2e/outside-world.js";

// The e2e's outside world must never take a range the machine already uses: this VM's own uplink
// is 192.0.2.2/24 with its gateway at 192.0.2.1.

test("the outside world skips ranges held by an address or a route", () => {
  const addresses = JSON.stringify([
    { ifname: "lo", addr_info: [{ local: "127.0.0.1" }] },
    { ifname: "eth0", addr_info: [{ local: "192.0.2.2" }] },
  ]);
  const routes = JSON.stringify([
    { dst: "default", gateway: "192.0.2.1" },
    { dst: "198.51.100.0/24", dev: "wg0" },
  ]);
  assert.equal(unusedRange(["198.51.100", "203.0.113", "192.0.2"], addresses, routes), "203.0.113");
  assert.equal(unusedRange(["192.0.2"], addresses, "[]"), undefined);
  assert.equal(unusedRange(["192.0.2"], "[]", "[]"), "192.0.2");
});
