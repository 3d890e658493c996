/** CLI and agent errors carry an `E_*` code; callers branch on the code, never the text. */
export class WeaveError extends Error {
  constructor(
    readonly code: `E_${string}`,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "WeaveError";
  }
}
