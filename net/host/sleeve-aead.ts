/**
 * AES-256-GCM for the packet loops, in place and without allocating: OpenSSL's EVP API
 * in libcrypto.so.3 through bun:ffi, one cipher context per key with the key schedule
 * set once, the nonce and additional data per packet. Same bytes as frame.ts's
 * sealInPlace/openInPlace (node:crypto), which is the fallback when libcrypto is missing.
 *
 * Why not node:crypto in the loops: it allocates several small objects per packet, and a
 * worker that allocates at line rate runs the garbage collector constantly; Bun 1.4.5
 * crashes (SIGSEGV in a worker, with concurrent GC and the DFG JIT; cf. oven-sh/bun#41857)
 * under exactly that load. The loops stay allocation-free so the collector has nothing
 * to do there. (That crash may have been ours: until 2026-12-02 the `outLen` scratch
 * below was not kept reachable, so the first collection freed it and every packet had
 * libcrypto write 4 bytes into freed memory; it is pinned now, sleeve-sys.ts.)
 */
import { dlopen, FFIType, ptr } from "bun:ffi";
import { COUNTER_LEN, HEADER_LEN, openInPlace, sealInPlace, TAG_LEN, writeCounter } from "../sleeve/frame.ts";
import { pinned, stable } from "./sleeve-sys.ts";

const EVP_CTRL_GCM_GET_TAG = 0x10;
const EVP_CTRL_GCM_SET_TAG = 0x11;

function loadLibcrypto() {
  const { i32, ptr: p } = FFIType;
  // Declared through `fn` so pointer parameters take the plain numbers the loops compute.
  const fn = (args: FFIType[], returns: FFIType) => ({ args, returns });
  try {
    return dlopen("libcrypto.so.3", {
      EVP_aes_256_gcm: fn([], p),
      EVP_CIPHER_CTX_new: fn([], p),
      EVP_CIPHER_CTX_free: fn([p], FFIType.void),
      EVP_EncryptInit_ex: fn([p, p, p, p, p], i32),
      EVP_DecryptInit_ex: fn([p, p, p, p, p], i32),
      EVP_EncryptUpdate: fn([p, p, p, p, i32], i32),
      EVP_DecryptUpdate: fn([p, p, p, p, i32], i32),
      EVP_EncryptFinal_ex: fn([p, p, p], i32),
      EVP_DecryptFinal_ex: fn([p, p, p], i32),
      EVP_CIPHER_CTX_ctrl: fn([p, i32, i32, p], i32),
    }).symbols;
  } catch {
    return null;
  }
}

const evp = loadLibcrypto();
/** Scratch for every call on this thread: the nonce, an int out-parameter. */
const nonce = pinned(Uint8Array, 16);
const noncePtr = ptr(nonce);
const outLen = pinned(Int32Array, 8);
const outLenPtr = ptr(outLen);

/** Whether the packet loops seal without allocating (libcrypto) or through node:crypto. */
export const aeadBackend: "libcrypto" | "node:crypto" = evp ? "libcrypto" : "node:crypto";

/** One key, one direction. */
export class Aead {
  private readonly enc: number;
  private readonly dec: number;

  constructor(private readonly key: Buffer) {
    if (!evp) {
      this.enc = 0;
      this.dec = 0;
      return;
    }
    const k = stable(Uint8Array, 32);
    k.set(key);
    const cipher = evp.EVP_aes_256_gcm();
    this.enc = Number(evp.EVP_CIPHER_CTX_new());
    this.dec = Number(evp.EVP_CIPHER_CTX_new());
    if (!this.enc || !this.dec) throw new Error("EVP_CIPHER_CTX_new failed");
    if (evp.EVP_EncryptInit_ex(this.enc, cipher, null, ptr(k), null) !== 1)
      throw new Error("EVP_EncryptInit_ex failed");
    if (evp.EVP_DecryptInit_ex(this.dec, cipher, null, ptr(k), null) !== 1)
      throw new Error("EVP_DecryptInit_ex failed");
    k.fill(0);
  }

  /** As frame.ts sealInPlace: header at `off` written, plaintext at off + 16; returns the datagram's length. */
  seal(buf: Uint8Array, bufPtr: number, off: number, frameLen: number, counter: number): number {
    if (!evp) return sealInPlace(this.key, counter, buf, off, frameLen);
    writeCounter(buf, off + HEADER_LEN, counter);
    this.setNonce(buf, off);
    const at = bufPtr + off + HEADER_LEN + COUNTER_LEN;
    const ctx = this.enc;
    evp.EVP_EncryptInit_ex(ctx, null, null, null, noncePtr);
    evp.EVP_EncryptUpdate(ctx, null, outLenPtr, bufPtr + off, HEADER_LEN);
    evp.EVP_EncryptUpdate(ctx, at, outLenPtr, at, frameLen);
    evp.EVP_EncryptFinal_ex(ctx, at + frameLen, outLenPtr);
    evp.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, at + frameLen);
    return HEADER_LEN + COUNTER_LEN + frameLen + TAG_LEN;
  }

  /** As frame.ts openInPlace: the plaintext's length (at off + 16), or -1 when the tag does not verify. */
  open(buf: Uint8Array, bufPtr: number, off: number, len: number): number {
    if (!evp) return openInPlace(this.key, buf, off, len);
    const frameLen = len - HEADER_LEN - COUNTER_LEN - TAG_LEN;
    if (frameLen < 0) return -1;
    this.setNonce(buf, off);
    const at = bufPtr + off + HEADER_LEN + COUNTER_LEN;
    const ctx = this.dec;
    evp.EVP_DecryptInit_ex(ctx, null, null, null, noncePtr);
    evp.EVP_DecryptUpdate(ctx, null, outLenPtr, bufPtr + off, HEADER_LEN);
    evp.EVP_DecryptUpdate(ctx, at, outLenPtr, at, frameLen);
    evp.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, at + frameLen);
    return evp.EVP_DecryptFinal_ex(ctx, at + frameLen, outLenPtr) === 1 ? frameLen : -1;
  }

  /** The contexts are C memory: free them when the key leaves for good. */
  free(): void {
    if (!evp) return;
    evp.EVP_CIPHER_CTX_free(this.enc);
    evp.EVP_CIPHER_CTX_free(this.dec);
  }

  private setNonce(buf: Uint8Array, off: number): void {
    nonce[0] = nonce[1] = nonce[2] = nonce[3] = 0;
    for (let i = 0; i < COUNTER_LEN; i++) nonce[4 + i] = buf[off + HEADER_LEN + i]!;
  }
}
