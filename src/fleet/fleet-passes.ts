/**
 * The last prefetch pass the fleet finished for each mirror (records
 * `passes/mirror-<name>`), written by the replica that ran it while it holds the
 * mirror's lease. Every replica's schedule reads it to run a pass only when
 * one is due fleet-wide: no pass of the selection it serves has finished
 * within `prefetch.interval`. A pass cut short (its replica killed) writes
 * nothing, so the next replica to take the lease runs it again.
 */

import type { RecordStore } from '../store/s3-records.js'

export interface FleetPassRecord {
  replica: string
  advertise: string
  /** ISO times. */
  startedAt: string
  finishedAt: string
  result: string
  /** The selection the pass fetched (`Publication.selectionDigest`); null without metadata. */
  selectionDigest: string | null
}

export interface FleetPasses {
  last(mirror: string): Promise<FleetPassRecord | undefined>
  /** Replaces the mirror's record; the caller holds the mirror's lease, so nobody else writes it meanwhile. */
  record(mirror: string, pass: FleetPassRecord): Promise<void>
}

export function createFleetPasses(records: RecordStore): FleetPasses {
  // Prefixed: a mirror may be named `.`, which is no record name.
  const nameOf = (mirror: string) => `passes/mirror-${mirror}`
  return {
    async last(mirror) {
      return (await records.read<FleetPassRecord>(nameOf(mirror)))?.value
    },
    async record(mirror, pass) {
      const name = nameOf(mirror)
      // Twice at most: a replica whose lease lapsed during a stall may write the
      // record between our read and our write; the last finished pass wins.
      for (let attempt = 0; attempt < 2; attempt++) {
        const existing = await records.read(name)
        const written = existing === undefined ? await records.create(name, pass) : await records.replace(name, pass, existing.etag)
        if (written !== undefined) return
      }
    },
  }
}

/**
 * Whether a scheduled pass is due: no pass of the same selection finished
 * within `intervalMs` of its start. A pass of another selection (metadata
 * changed since) does not count.
 */
export function passDue(last: FleetPassRecord | undefined, selectionDigest: string | null, intervalMs: number, at: number): boolean {
  if (last === undefined || last.selectionDigest !== selectionDigest) return true
  return at - Date.parse(last.startedAt) >= intervalMs
}
