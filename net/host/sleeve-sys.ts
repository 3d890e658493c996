/**
 * The syscalls of the sleeve's packet loops, through bun:ffi. Each thread that imports
 * this opens libc for itself (a worker has its own module instances); errno is per thread.
 * Return values of read/write/sendto/recvfrom are ssize_t: taken as i32, which keeps the
 * sign and every length up to 2 GiB, and stays a plain number in the JIT.
 */
import { dlopen, FFIType, read } from "bun:ffi";

const { i32, u32, u64, ptr } = FFIType;

const lib = dlopen("libc.so.6", {
  socket: { args: [i32, i32, i32], returns: i32 },
  bind: { args: [i32, ptr, u32], returns: i32 },
  setsockopt: { args: [i32, i32, i32, ptr, u32], returns: i32 },
  close: { args: [i32], returns: i32 },
  read: { args: [i32, ptr, u64], returns: i32 },
  write: { args: [i32, ptr, u64], returns: i32 },
  sendto: { args: [i32, ptr, u64, i32, ptr, u32], returns: i32 },
  recvfrom: { args: [i32, ptr, u64, i32, ptr, ptr], returns: i32 },
  sendmsg: { args: [i32, ptr, i32], returns: i32 },
  recvmsg: { args: [i32, ptr, i32], returns: i32 },
  poll: { args: [ptr, u64, i32], returns: i32 },
  memcpy: { args: [ptr, ptr, u64], returns: ptr },
  strerror: { args: [i32], returns: FFIType.cstring },
  __errno_location: { args: [], returns: ptr },
});

export const sys = lib.symbols;
const errnoAt = sys.__errno_location()!;

/** errno of the last failed call on this thread. */
export function errno(): number {
  return read.i32(errnoAt, 0);
}

export function strerror(code: number): string {
  return String(sys.strerror(code));
}

export const EINTR = 4;
export const EAGAIN = 11;
export const EINVAL = 22;
export const EMSGSIZE = 90;
export const ENOPROTOOPT = 92;
export const EOPNOTSUPP = 95;
export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const SOL_UDP = 17;
/** setsockopt/cmsg: send one buffer as datagrams of this size (UDP GSO, Linux 4.18). */
export const UDP_SEGMENT = 103;
/** setsockopt: receive runs of same-size datagrams of one flow as one buffer, the size in a cmsg (Linux 5.0). */
export const UDP_GRO = 104;
export const POLLIN = 1;
export const POLLOUT = 4;
export const MSG_DONTWAIT = 0x40;

/**
 * Memory native code keeps a pointer to (ptr() once, used on every call) must never be a
 * small typed array: JSC keeps those inline in the GC heap and moves them into an
 * ArrayBuffer of their own when a caller tiers up to the DFG, leaving the pointer taken
 * before dangling: the kernel then reads a stale msghdr while JS writes the new one
 * (oven-sh/bun#32054; it showed here as garbage datagrams after a few thousand packets).
 * A view on an explicit ArrayBuffer has its storage out of line from the start. That
 * keeps the memory from moving; only a live reference keeps it from being freed (pinned).
 */
export function stable<T>(View: new (buffer: ArrayBuffer) => T, bytes: number): T {
  return new View(new ArrayBuffer(bytes));
}

/**
 * ptr() is a plain number: it does not keep the view alive. Memory whose pointer is kept
 * and used after the last JS reference to the view (module-level scratch, a buffer only
 * a msghdr or a number points to) must stay reachable or the collector frees it and C
 * writes into freed memory. These views are held for the life of this thread.
 */
const pinnedViews: unknown[] = [];
export function pinned<T>(View: new (buffer: ArrayBuffer) => T, bytes: number): T {
  const v = stable(View, bytes);
  pinnedViews.push(v);
  return v;
}

/** Store pointer (or size_t) `p` at 64-bit slot `i` of a Uint32Array (little-endian), without a BigInt. */
export function setU64(u32: Uint32Array, i: number, p: number): void {
  u32[i * 2] = p >>> 0;
  u32[i * 2 + 1] = Math.floor(p / 0x100000000);
}

/** A struct sockaddr_in for ip (host order u32) and port. */
export function sockaddrIn(ip: number, port: number): Uint8Array {
  const sa = stable(Uint8Array, 16);
  const v = new DataView(sa.buffer);
  v.setUint16(0, AF_INET, true);
  v.setUint16(2, port);
  v.setUint32(4, ip);
  return sa;
}
