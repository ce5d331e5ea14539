import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { CNI_ERROR, CniError } from "../../src/cni/errors.js";
import { FileIpam } from "../../src/cni/ipam.js";
import { formatIpv4, parseIpv4, parseSubnet } from "../../src/cni/ipv4.js";

async function ipamIn(t: TestContext, subnet = "10.244.0.0/24"): Promise<FileIpam> {
  const dir = await mkdtemp(join(tmpdir(), "sk-cni-ipam-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const parsed = parseSubnet(subnet);
  assert.ok(parsed);
  // A folder that does not exist yet, as on a fresh node.
  return new FileIpam(join(dir, "ipam"), parsed, parsed.network + 1);
}

const owner = (containerId: string, ifname = "eth0") => ({ containerId, ifname });

async function addressFiles(ipam: FileIpam): Promise<string[]> {
  return (await readdir(ipam.dir)).filter((name) => parseIpv4(name) !== undefined).sort();
}

test("ipam: allocates one file per address, with its owner, skipping the gateway", async (t) => {
  const ipam = await ipamIn(t);
  const a = await ipam.allocate(owner("a"), ".pending-a");
  const b = await ipam.allocate(owner("b"), ".pending-b");
  assert.equal(formatIpv4(a), "10.244.0.2");
  assert.equal(formatIpv4(b), "10.244.0.3");
  assert.deepEqual(await addressFiles(ipam), ["10.244.0.2", "10.244.0.3"]);
  assert.equal(await readFile(join(ipam.dir, "10.244.0.2"), "utf8"), "a\neth0\n");
  // No pending record is left behind.
  assert.deepEqual(
    (await readdir(ipam.dir)).filter((name) => name.startsWith(".pending")),
    [],
  );
});

test("ipam: the same owner gets its address back (an ADD retried after a crash)", async (t) => {
  const ipam = await ipamIn(t);
  const first = await ipam.allocate(owner("a"), ".pending-a");
  assert.equal(await ipam.allocate(owner("a"), ".pending-a"), first);
  assert.notEqual(await ipam.allocate(owner("a", "net1"), ".pending-a1"), first);
  assert.equal((await addressFiles(ipam)).length, 2);
});

test("ipam: release removes only that owner's files and is idempotent", async (t) => {
  const ipam = await ipamIn(t);
  await ipam.allocate(owner("a"), ".pending-a");
  await ipam.allocate(owner("b"), ".pending-b");
  assert.deepEqual((await ipam.release(owner("a"))).map(formatIpv4), ["10.244.0.2"]);
  assert.deepEqual(await ipam.release(owner("a")), []);
  assert.deepEqual(await ipam.release(owner("never-added")), []);
  assert.deepEqual(await addressFiles(ipam), ["10.244.0.3"]);
});

test("ipam: a released address is handed out last, not next", async (t) => {
  const ipam = await ipamIn(t, "10.0.0.0/29");
  const a = await ipam.allocate(owner("a"), ".p");
  await ipam.allocate(owner("b"), ".p");
  await ipam.release(owner("a"));
  const c = await ipam.allocate(owner("c"), ".p");
  assert.notEqual(c, a);
  assert.equal(formatIpv4(c), "10.0.0.4");
});

test("ipam: exhaustion is a CNI error naming the range; hasFreeAddress tells STATUS", async (t) => {
  // /29: 8 addresses minus network, broadcast and gateway leaves 5.
  const ipam = await ipamIn(t, "10.0.0.0/29");
  for (const id of ["a", "b", "c", "d", "e"]) await ipam.allocate(owner(id), `.p-${id}`);
  assert.equal(await ipam.hasFreeAddress(), false);
  await assert.rejects(
    ipam.allocate(owner("f"), ".p-f"),
    (error: unknown) =>
      error instanceof CniError &&
      error.code === CNI_ERROR.addressesExhausted &&
      /10\.0\.0\.0\/29/.test(error.message),
  );
  assert.deepEqual(
    (await readdir(ipam.dir)).filter((name) => name.startsWith(".p")),
    [],
    "the failed allocation left its pending record",
  );
  await ipam.release(owner("c"));
  assert.equal(await ipam.hasFreeAddress(), true);
  assert.equal(formatIpv4(await ipam.allocate(owner("f"), ".p-f")), "10.0.0.4");
});

test("ipam: concurrent allocations never share an address or overwrite a file", async (t) => {
  const ipam = await ipamIn(t);
  await ipam.allocate(owner("a"), ".p-a");
  // Another plugin process's file, whose owner must survive whatever the allocations below do.
  await writeFile(join(ipam.dir, "10.244.0.3"), "racer\neth0\n", { flag: "wx" });
  // Six ADDs at once: each lists the folder before the others have linked their files, so they
  // pick the same candidates and only link(2)'s EEXIST keeps them apart.
  const results = await Promise.all(
    ["b", "c", "d", "e", "f", "g"].map((id) => ipam.allocate(owner(id), `.p-${id}`)),
  );
  assert.equal(new Set(results).size, results.length, "two owners got the same address");
  assert.ok(!results.map(formatIpv4).includes("10.244.0.3"));
  assert.equal(await readFile(join(ipam.dir, "10.244.0.3"), "utf8"), "racer\neth0\n");
  assert.equal((await ipam.allocations()).length, 8);
});

test("ipam: files outside the subnet and foreign names are ignored", async (t) => {
  const ipam = await ipamIn(t);
  await ipam.allocate(owner("a"), ".p");
  await writeFile(join(ipam.dir, "10.99.0.5"), "other\neth0\n");
  await writeFile(join(ipam.dir, "README"), "not an address\n");
  assert.deepEqual(
    (await ipam.allocations()).map((allocation) => formatIpv4(allocation.address)),
    ["10.244.0.2"],
  );
});
