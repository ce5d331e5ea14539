import { open } from "node:fs/promises";

/** ELF program header type of the dynamic loader's path (elf.h PT_INTERP). */
const PT_INTERP = 3;

/**
 * Pure: whether an ELF file's program headers name a dynamic loader. A binary without one
 * (static or static-pie) runs in an image that holds nothing else.
 */
export function elfNeedsLoader(bytes: Buffer): boolean {
  if (bytes.length < 64 || bytes.readUInt32BE(0) !== 0x7f454c46) {
    throw new Error("not an ELF file");
  }
  const is64 = bytes[4] === 2;
  const little = bytes[5] === 1;
  const u16 = (o: number): number => (little ? bytes.readUInt16LE(o) : bytes.readUInt16BE(o));
  const u32 = (o: number): number => (little ? bytes.readUInt32LE(o) : bytes.readUInt32BE(o));
  const u64 = (o: number): number =>
    Number(little ? bytes.readBigUInt64LE(o) : bytes.readBigUInt64BE(o));
  const phoff = is64 ? u64(32) : u32(28);
  const phentsize = is64 ? u16(54) : u16(42);
  const phnum = is64 ? u16(56) : u16(44);
  for (let i = 0; i < phnum; i++) {
    const offset = phoff + i * phentsize;
    if (offset + 4 > bytes.length) throw new Error("truncated ELF program headers");
    if (u32(offset) === PT_INTERP) return true;
  }
  return false;
}

/** Reads just the headers: program headers sit near the start of every linker's output. */
export async function isStaticElf(path: string): Promise<boolean> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(64 * 1024);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return !elfNeedsLoader(buffer.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}
