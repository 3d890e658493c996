/**
 * The few libc calls the host layer needs, through bun:ffi: a netlink socket, setns(2),
 * flock(2), getsockopt(2) (a unix socket peer's credentials) and errno. Everything else is plain Node/Bun file APIs.
 */
import { dlopen, FFIType, read } from "bun:ffi";

const { i32, u32, u64, ptr } = FFIType;

const lib = dlopen("libc.so.6", {
  socket: { args: [i32, i32, i32], returns: i32 },
  send: { args: [i32, ptr, u64, i32], returns: i32 },
  recv: { args: [i32, ptr, u64, i32], returns: i32 },
  close: { args: [i32], returns: i32 },
  setns: { args: [i32, i32], returns: i32 },
  setsockopt: { args: [i32, i32, i32, ptr, u32], returns: i32 },
  flock: { args: [i32, i32], returns: i32 },
  getsockopt: { args: [i32, i32, i32, ptr, ptr], returns: i32 },
  strerror: { args: [i32], returns: FFIType.cstring },
  __errno_location: { args: [], returns: ptr },
});

export const libc = lib.symbols;

/** errno of the last failed libc call on this thread. */
export function errno(): number {
  return read.i32(libc.__errno_location()!, 0);
}

export function strerror(code: number): string {
  return String(libc.strerror(code));
}

export const CLONE_NEWNET = 0x40000000;
