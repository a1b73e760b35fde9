import { crc32, gzipSync } from 'node:zlib';
import { pack as tarPack, type Header } from 'tar-stream';

export type TarEntry = Partial<Header> & { name: string; content?: Buffer | string };

/** A tar archive (optionally gzipped) from entries: test data for extraction, malicious ones included. */
export async function makeTar(entries: TarEntry[], gzip = false): Promise<Buffer> {
  const p = tarPack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((r) => p.on('end', () => r()));
  for (const { content, ...h } of entries) {
    await new Promise<void>((res, rej) => p.entry(h as Header, content ?? '', (err) => (err ? rej(err) : res())));
  }
  p.finalize();
  await ended;
  const tar = Buffer.concat(chunks);
  return gzip ? gzipSync(tar) : tar;
}

/** One zip entry: a name (a folder ends in '/'), bytes, a Unix mode (S_IFLNK for a symlink), a wrong CRC on purpose. */
export interface ZipEntry {
  name: string;
  content?: Buffer | string;
  /** Unix mode with its file type bits, stored in the external attributes; default 0o100644 (0o40755 for folders). */
  mode?: number;
  /** The CRC-32 to record instead of the real one. */
  crc?: number;
}

/**
 * A zip archive with stored (uncompressed) entries: enough for extraction tests, no zip library needed.
 * A record gives files by name; a list allows folders, symlinks (mode 0o120777, the target as content),
 * a name twice and a wrong CRC.
 */
export function makeZip(files: Record<string, Buffer | string> | ZipEntry[]): Buffer {
  const entries: ZipEntry[] = Array.isArray(files)
    ? files
    : Object.entries(files).map(([name, content]) => ({ name, content }));
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const data = Buffer.from(e.content ?? '');
    const fname = Buffer.from(e.name);
    const crc = e.crc ?? crc32(data);
    const mode = e.mode ?? (e.name.endsWith('/') ? 0o40755 : 0o100644);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x800, 6); // names are UTF-8
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(fname.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by Unix: the mode in the external attributes means what it says
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x800, 8);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(fname.length, 28);
    central.writeUInt32LE((mode << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, fname, data);
    centrals.push(central, fname);
    offset += local.length + fname.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}
