/**
 * A TAP device for the sleeve: open("/dev/net/tun") and ioctl(TUNSETIFF) with IFF_TAP |
 * IFF_NO_PI, non-blocking. Not persistent: the device lives as long as its fd, so closing
 * the fd (or the process dying) removes it. Attaching it to the bridge, its MTU and
 * bringing it up are the caller's (netlink).
 */
import { dlopen, FFIType, read, ptr } from "bun:ffi";

const { i32, u64 } = FFIType;

const lib = dlopen("libc.so.6", {
  open: { args: [FFIType.ptr, i32], returns: i32 },
  ioctl: { args: [i32, u64, FFIType.ptr], returns: i32 },
  close: { args: [i32], returns: i32 },
  strerror: { args: [i32], returns: FFIType.cstring },
  __errno_location: { args: [], returns: FFIType.ptr },
});
const libc = lib.symbols;

const O_RDWR = 0o2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const TUNSETIFF = 0x400454ca;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const IFNAMSIZ = 16;

export class TapError extends Error {
  constructor(
    readonly step: "name" | "open" | "ioctl",
    readonly errno: number,
    message: string,
  ) {
    super(message);
    this.name = "TapError";
  }
}

export type Tap = { fd: number; name: string };

function lastError(): { code: number; text: string } {
  const code = read.i32(libc.__errno_location()!, 0);
  return { code, text: String(libc.strerror(code)) };
}

/**
 * Create (or attach to) the TAP device `name`; its fd is O_NONBLOCK and close-on-exec.
 * With `vnetHdr`, every frame read or written comes after a 10-byte struct virtio_net_hdr.
 */
export function openTap(name: string, opts: { vnetHdr?: boolean } = {}): Tap {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length === 0 || bytes.length >= IFNAMSIZ || !/^[A-Za-z0-9_.-]+$/.test(name))
    throw new TapError("name", 0, `TAP name ${JSON.stringify(name)} is not 1-15 plain characters`);
  const fd = libc.open(Buffer.from("/dev/net/tun\0"), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const e = lastError();
    throw new TapError("open", e.code, `open /dev/net/tun: ${e.text} (errno ${e.code})`);
  }
  // struct ifreq: ifr_name[16], then the union whose first member is short ifr_flags.
  const ifr = new Uint8Array(40);
  ifr.set(bytes, 0);
  new DataView(ifr.buffer).setInt16(IFNAMSIZ, IFF_TAP | IFF_NO_PI | (opts.vnetHdr ? IFF_VNET_HDR : 0), true);
  if (libc.ioctl(fd, TUNSETIFF, ptr(ifr)) < 0) {
    const e = lastError();
    libc.close(fd);
    throw new TapError("ioctl", e.code, `TUNSETIFF ${name}: ${e.text} (errno ${e.code})`);
  }
  const end = ifr.indexOf(0);
  return { fd, name: new TextDecoder().decode(ifr.subarray(0, end < 0 ? IFNAMSIZ : end)) };
}

export function closeTap(tap: Tap): void {
  libc.close(tap.fd);
}
