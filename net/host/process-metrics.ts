/**
 * Process memory and CPU for /metrics: prom-client's default metrics (they read /proc),
 * less those that Bun cannot fill in and would only mislead. Checked under Bun 1.4:
 * process_cpu_*, process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds, the event loop lag
 * (perf_hooks.monitorEventLoopDelay) and nodejs_heap_size_*_bytes / external memory
 * (process.memoryUsage) are right. Left out:
 * - nodejs_gc_duration_seconds: Bun emits no perf_hooks "gc" entries, so it stays empty;
 * - nodejs_heap_space_size_*: v8.getHeapSpaceStatistics is a stub (zeros, or the whole
 *   heap under "old");
 * - nodejs_active_handles / _requests / _resources: not implemented (always empty or 0);
 * - process_heap_bytes: VmData, which under JavaScriptCore is gigabytes of reserved
 *   address space, not heap;
 * - nodejs_version_info: the Node version Bun claims; weave_build_info has Bun's own.
 */
import { collectDefaultMetrics, type Registry } from "prom-client";

export const UNFIT_UNDER_BUN = [
  "nodejs_gc_duration_seconds",
  "nodejs_heap_space_size_total_bytes",
  "nodejs_heap_space_size_used_bytes",
  "nodejs_heap_space_size_available_bytes",
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_requests",
  "nodejs_active_requests_total",
  "nodejs_active_resources",
  "nodejs_active_resources_total",
  "process_heap_bytes",
  "nodejs_version_info",
];

/** Registers the process metrics that are right under Bun in each registry. */
export function registerProcessMetrics(registries: Registry[]): void {
  for (const register of registries) {
    collectDefaultMetrics({ register, eventLoopMonitoringPrecision: 100 });
    for (const name of UNFIT_UNDER_BUN) register.removeSingleMetric(name);
  }
}
