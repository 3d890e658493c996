/**
 * A minimal ustar writer: directories, regular files and symlinks, owned by root, with a
 * fixed mtime, so the same entries always give the same bytes (and so the same digest).
 *
 * Why not `tar`: an image layer's digest is its exact bytes, and GNU tar's output depends
 * on the host (owners, mtimes, PAX headers for long names); writing the few entries the
 * sandbox image needs by hand keeps the layer reproducible and the test free of flags.
 * Names must fit the 100-byte ustar name field (no prefix splitting is done).
 */

export type TarEntry =
  | { type: "dir"; path: string; mode?: number }
  | { type: "file"; path: string; data: Uint8Array; mode?: number }
  | { type: "symlink"; path: string; target: string };

const BLOCK = 512;
const MTIME = 946684800; // 2000-01-01: fixed, so output is reproducible

function putString(h: Uint8Array, offset: number, len: number, s: string): void {
  const bytes = new TextEncoder().encode(s);
  if (bytes.length > len) throw new Error(`tar: "${s}" does not fit in ${len} bytes`);
  h.set(bytes, offset);
}

/** An octal number field: zero-padded digits then NUL, as ustar wants. */
function putOctal(h: Uint8Array, offset: number, len: number, n: number): void {
  putString(h, offset, len, `${n.toString(8).padStart(len - 1, "0")}\0`);
}

function header(e: TarEntry, size: number): Uint8Array {
  const h = new Uint8Array(BLOCK);
  const name = e.type === "dir" && !e.path.endsWith("/") ? `${e.path}/` : e.path;
  const mode = e.type === "symlink" ? 0o777 : (e.mode ?? (e.type === "dir" ? 0o755 : 0o644));
  putString(h, 0, 100, name);
  putOctal(h, 100, 8, mode);
  putOctal(h, 108, 8, 0);
  putOctal(h, 116, 8, 0);
  putOctal(h, 124, 12, size);
  putOctal(h, 136, 12, MTIME);
  h.fill(0x20, 148, 156); // the checksum is computed with its own field as spaces
  h[156] = { file: 0x30, symlink: 0x32, dir: 0x35 }[e.type];
  if (e.type === "symlink") putString(h, 157, 100, e.target);
  putString(h, 257, 6, "ustar\0");
  putString(h, 263, 2, "00");
  putString(h, 265, 32, "root");
  putString(h, 297, 32, "root");
  const sum = h.reduce((a, b) => a + b, 0);
  putString(h, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

/** The archive: each entry's header and data (padded to 512), then two zero blocks. */
export function tar(entries: TarEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const data = e.type === "file" ? e.data : new Uint8Array(0);
    parts.push(header(e, data.length), data);
    const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (pad) parts.push(new Uint8Array(pad));
  }
  parts.push(new Uint8Array(2 * BLOCK));
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
