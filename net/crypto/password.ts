/**
 * WEAVE_PASSWORD -> the mesh's 32-byte Noise pre-shared key, by scrypt (node:crypto).
 *
 * Anyone who makes an honest peer dial them (or sits on the path) receives the final
 * handshake message, which is sealed under a key mixed from the PSK: an offline oracle
 * for password guesses that no PSK handshake avoids. scrypt makes every guess cost what
 * one agent start costs (N = 2^15, r = 8: 32 MiB and ~100 ms here), instead of one HMAC.
 *
 * The salt is the cluster's pod range (IPALLOC_RANGE), which every peer of a cluster
 * must share anyway and no attacker can choose, behind a fixed label. A salt sent in
 * the clear would be chosen by whoever answers, i.e. by the attacker posing as a peer,
 * who would then pick one they have precomputed. Clusters on the default range share a
 * salt; for them the defence is scrypt's cost and the password's strength.
 */
import { scryptSync } from "node:crypto";

export const SCRYPT_PARAMS = { N: 2 ** 15, r: 8, p: 1 } as const;
const SALT_LABEL = "weave mesh psk v1\0";

/** The password's bytes, as given (a password file may hold any bytes, not only text). */
export function meshPsk(password: Uint8Array, clusterSalt: string, params = SCRYPT_PARAMS): Uint8Array {
  const salt = new TextEncoder().encode(SALT_LABEL + clusterSalt);
  const maxmem = 128 * params.N * params.r * 2;
  return new Uint8Array(scryptSync(password, salt, 32, { ...params, maxmem }));
}
