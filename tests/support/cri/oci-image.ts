/**
 * The sandbox ("pause") image for the containerd test, made here because no registry can
 * be reached: one uncompressed layer holding Debian busybox-static's /bin/busybox, whose
 * entrypoint sleeps until it is killed (containerd stops a sandbox with SIGKILL, so a
 * real pause binary's signal handling is not needed).
 *
 * It is written as an OCI image layout in a tar (oci-layout, index.json, blobs/sha256/…),
 * which `ctr images import` reads; the index's `io.containerd.image.name` annotation gives
 * the image its name, the one set as the CRI plugin's `sandbox_image`.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { tar, type TarEntry } from "./tar.ts";

export const BUSYBOX = "/bin/busybox";

const MEDIA = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar",
};

type Blob = { digest: string; size: number; bytes: Uint8Array };

function blob(bytes: Uint8Array | string): Blob {
  const b = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  return { digest: `sha256:${createHash("sha256").update(b).digest("hex")}`, size: b.length, bytes: b };
}

/** The OCI name of this machine's architecture (the image must match it, or ctr skips it). */
export function ociArch(): string {
  return ({ x64: "amd64", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x" } as Record<string, string>)[
    process.arch
  ]!;
}

/** An OCI layout tar of a busybox image named `ref` whose entrypoint sleeps forever. */
export function sandboxImageTar(ref: string): Uint8Array {
  const rootfs: TarEntry[] = [
    { type: "dir", path: "bin" },
    { type: "file", path: "bin/busybox", data: readFileSync(BUSYBOX), mode: 0o755 },
    { type: "symlink", path: "bin/sh", target: "busybox" },
    { type: "symlink", path: "bin/sleep", target: "busybox" },
    ...["dev", "etc", "proc", "sys", "tmp"].map((path): TarEntry => ({ type: "dir", path })),
  ];
  const layer = blob(tar(rootfs));
  const platform = { architecture: ociArch(), os: "linux" };
  const config = blob(
    JSON.stringify({
      ...platform,
      config: { Entrypoint: ["/bin/sleep", "2147483647"], Env: ["PATH=/bin"], WorkingDir: "/" },
      rootfs: { type: "layers", diff_ids: [layer.digest] },
    }),
  );
  const manifest = blob(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: { mediaType: MEDIA.config, digest: config.digest, size: config.size },
      layers: [{ mediaType: MEDIA.layer, digest: layer.digest, size: layer.size }],
    }),
  );
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA.index,
    manifests: [
      {
        mediaType: MEDIA.manifest,
        digest: manifest.digest,
        size: manifest.size,
        platform,
        annotations: { "io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.split(":").pop() },
      },
    ],
  };
  const file = (path: string, b: Uint8Array | string): TarEntry => ({
    type: "file",
    path,
    data: typeof b === "string" ? new TextEncoder().encode(b) : b,
  });
  return tar([
    file("oci-layout", JSON.stringify({ imageLayoutVersion: "1.0.0" })),
    file("index.json", JSON.stringify(index)),
    { type: "dir", path: "blobs" },
    { type: "dir", path: "blobs/sha256" },
    ...[layer, config, manifest].map((b) => file(`blobs/sha256/${b.digest.slice(7)}`, b.bytes)),
  ]);
}
