/**
 * What the agent counts as it works, as plain numbers (no metrics library here): CNI
 * calls as they finish, reconcile errors, datapath changes and entries. The metrics
 * (net/metrics/agent-metrics.ts) read the totals at each scrape and follow the CNI
 * calls through `onCni`.
 */

/** One CNI call as the agent answered it: "ok", or the CNI error code. */
export type CniObservation = { command: string; code: number | undefined; seconds: number };

export class AgentStats {
  /** Reconcile passes that failed, by part: node (bridge, sysctl, masquerading) or datapath. */
  readonly reconcileErrors = new Map<string, number>();
  /** Kernel changes the datapath made (device, FDB and neighbour entries). */
  datapathChanges = 0;
  /** What the datapath holds now: FDB entries of the VXLAN device, neighbour entries of the bridge. */
  datapathEntries = { fdb: 0, neighbour: 0 };
  private cniListeners: ((o: CniObservation) => void)[] = [];

  reconcileError(part: string): void {
    this.reconcileErrors.set(part, (this.reconcileErrors.get(part) ?? 0) + 1);
  }

  onCni(cb: (o: CniObservation) => void): void {
    this.cniListeners.push(cb);
  }

  cni(o: CniObservation): void {
    for (const l of this.cniListeners) l(o);
  }
}
