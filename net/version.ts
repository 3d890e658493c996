/** The version this build reports (agent /report, `weave --version`). */
export const VERSION = "0.1.0";
