/**
 * The agent's state in SQLite (bun:sqlite) under the data dir: allocations and a few
 * settings that must not silently change under existing allocations (the range).
 */
import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { AllocStore, Entry } from "../ipam/allocator.ts";

export const DB_FILE = "weave.db";

export class Store implements AllocStore {
  readonly db: Database;

  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true });
    this.db = new Database(join(dataDir, DB_FILE), { create: true });
    this.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    this.db.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS allocations (
        container_id TEXT NOT NULL, ifname TEXT NOT NULL, address INTEGER NOT NULL UNIQUE,
        pod TEXT, created_at INTEGER NOT NULL, PRIMARY KEY (container_id, ifname));`);
  }

  getMeta(key: string): string | undefined {
    return this.db.query<{ value: string }, [string]>("SELECT value FROM meta WHERE key = ?").get(key)?.value;
  }

  setMeta(key: string, value: string): void {
    this.db
      .query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
      .run(key, value);
  }

  load(): Entry[] {
    return this.db
      .query<{ container_id: string; ifname: string; address: number; pod: string | null; created_at: number }, []>(
        "SELECT * FROM allocations",
      )
      .all()
      .map((r) => ({
        containerId: r.container_id,
        ifname: r.ifname,
        address: r.address,
        createdAt: r.created_at,
        ...(r.pod ? { pod: r.pod } : {}),
      }));
  }

  put(e: Entry): void {
    this.db
      .query("INSERT INTO allocations (container_id, ifname, address, pod, created_at) VALUES (?, ?, ?, ?, ?)")
      .run(e.containerId, e.ifname, e.address, e.pod ?? null, e.createdAt);
  }

  remove(e: Entry): void {
    this.db.query("DELETE FROM allocations WHERE container_id = ? AND ifname = ?").run(e.containerId, e.ifname);
  }

  close(): void {
    this.db.close();
  }
}
