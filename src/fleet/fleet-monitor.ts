/**
 * The fleet as `/status` and `/metrics` show it: the live replicas (from the
 * registry), the holder of each mirror's prefetch lease and of the `gc`
 * lease, and the fills running fleet-wide (their claims). Read from the
 * bucket every `everyMs`, never on a request: a scrape or a status page costs
 * the store nothing, and a store that is down leaves the last reading shown
 * with the error beside it.
 */

import type { AsyncLeases } from '../store/lease.js'
import type { RecordStore } from '../store/s3-records.js'
import { listLiveClaims } from './fill-claim-list.js'
import type { LiveReplica, ReplicaRegistry } from './replica-registry.js'

export interface FleetLeaseStatus {
  /** `prefetch:<mirror>` or `gc`. */
  name: string
  /** The mirror whose passes it guards; null for `gc`. */
  mirror: string | null
  /** The holding replica's id and URL; null while nobody holds it. */
  holder: string | null
  holderAdvertise: string | null
  /** Held by this replica. */
  heldHere: boolean
  expiresAt: string | null
}

export interface FleetFillStatus {
  sha256: string
  path: string
  size: number
  /** The URL of the replica filling it. */
  owner: string
  since: string | null
}

export interface FleetStatus {
  replica: { id: string; advertise: string }
  replicas: Array<Pick<LiveReplica, 'id' | 'advertise' | 'startedAt' | 'version' | 'self' | 'disagrees'>>
  leases: FleetLeaseStatus[]
  fills: FleetFillStatus[]
  /** When the bucket was last read (ISO); null before the first reading. */
  checkedAt: string | null
  /** Why the last reading failed; null when it did not. */
  error: string | null
}

export interface FleetMonitorOptions {
  replica: { id: string; advertise: string }
  registry: Pick<ReplicaRegistry, 'replicas'>
  leases: AsyncLeases
  records: RecordStore
  /** The mirrors in force (a reload may change them). */
  mirrorNames: () => string[]
  everyMs: number
  now?: () => number
}

export interface FleetMonitor {
  /** Reads the bucket now; `start` does so every `everyMs`. Never throws: a failure is kept as `error`. */
  refresh(): Promise<void>
  start(): void
  stop(): Promise<void>
  status(): FleetStatus
}

export function createFleetMonitor(options: FleetMonitorOptions): FleetMonitor {
  const { replica, leases, records } = options
  const now = options.now ?? Date.now
  let leaseStatus: FleetLeaseStatus[] = []
  let fills: FleetFillStatus[] = []
  let checkedAt: string | null = null
  let error: string | null = null
  let timer: NodeJS.Timeout | undefined
  let reading: Promise<void> = Promise.resolve()

  async function read(): Promise<void> {
    try {
      const named = [...options.mirrorNames().map((mirror) => ({ name: `prefetch:${mirror}`, mirror })), { name: 'gc', mirror: null }]
      leaseStatus = await Promise.all(
        named.map(async ({ name, mirror }) => {
          const holder = await leases.holder(name)
          return {
            name,
            mirror,
            holder: holder?.owner ?? null,
            holderAdvertise: holder?.advertise ?? null,
            heldHere: holder?.owner === replica.id,
            expiresAt: holder === undefined ? null : new Date(holder.expiresAt).toISOString(),
          }
        }),
      )
      const claims = await listLiveClaims(records, now())
      fills = [...claims]
        .map(([sha256, claim]) => ({ sha256, path: claim.path, size: claim.size, owner: claim.advertise, since: new Date(claim.since).toISOString() }))
        .sort((a, b) => a.path.localeCompare(b.path))
      checkedAt = new Date(now()).toISOString()
      error = null
    } catch (failure) {
      error = (failure as Error).message
    }
  }

  const refresh = () => (reading = reading.then(read))
  return {
    refresh,
    start() {
      void refresh()
      timer = setInterval(() => void refresh(), options.everyMs)
      timer.unref()
    },
    async stop() {
      if (timer !== undefined) clearInterval(timer)
      await reading
    },
    status: () => ({
      replica: { id: replica.id, advertise: replica.advertise },
      replicas: options.registry.replicas().map(({ id, advertise, startedAt, version, self, disagrees }) => ({ id, advertise, startedAt, version, self, disagrees })),
      leases: leaseStatus,
      fills,
      checkedAt,
      error,
    }),
  }
}
