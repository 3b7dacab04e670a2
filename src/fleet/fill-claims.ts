/**
 * One upstream transfer per file across the fleet. Before a replica fills a
 * file it looks in the shared bucket (another replica may have stored it) and
 * then claims it: a record `fills/<sha256>` created with `If-None-Match: *`,
 * naming the owner, its advertise URL and an expiry. The replica that creates
 * it owns the fill: it reads upstream, renews the claim every third of
 * `fleet.claimTtl`, and removes it once the fill has ended. Every other
 * replica follows: its fill's source is the owner's internal endpoint
 * (peer-fill.ts), and its writer only spools, storing the object at commit
 * only when the owner has not. When the owner's stream breaks, the follower
 * reads the claim again: a live owner is asked again; an expired claim (the
 * owner died) is taken over by replacing it with `If-Match` on the etag read,
 * which only one replica wins, and the winner resumes from upstream at the
 * offset it has; a claim gone with the object stored is read from the bucket.
 * A follower verifies size and sha256 like any fill.
 */

import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '../log/logger.js'
import type { FillPlan, FillPlanner, FillResponse, FillSource, FillTarget, FleetRole } from '../store/fill.js'
import type { ObjectStore } from '../store/object-store.js'
import { rangeStream, storedRange } from '../store/range-source.js'
import { UpstreamError } from '../upstream/upstream-client.js'
import type { Replica } from './replica.js'
import { openPeerFill } from './peer-fill.js'

/** The record a fill's owner keeps in the bucket while it fills. */
export interface FillClaim {
  owner: string
  advertise: string
  size: number
  path: string
  /** Milliseconds since the epoch; replicas' clocks are assumed in step (NTP) to well within a claimTtl. */
  expiresAt: number
  /** When this replica claimed the fill (epoch ms), kept across renewals: /status shows how long it has run. */
  since: number
}

export interface FillClaimsOptions {
  replica: Replica
  objects: Pick<ObjectStore, 'head' | 'openRange'>
  log: Logger
  /** A fill of this replica followed another replica's (once per fill). */
  onPeerFill?: () => void
  /** This replica took over the fill of a replica whose claim expired. */
  onTakeover?: () => void
}

const claimName = (sha256: string) => `fills/${sha256}`

export function createFillClaims(options: FillClaimsOptions): FillPlanner {
  const { replica, objects, log } = options
  const { records, claimTtlMs } = replica
  // How often a follower looks again while the owner cannot be reached, and how
  // long one call of its source waits at most before the fill counts a failed attempt.
  const pollMs = Math.max(100, Math.min(1_000, claimTtlMs / 8))
  const patienceMs = 2 * claimTtlMs + 2_000

  /** The stored object from `offset`, as the body of a fill (verified again like any other). */
  const fromStore = async (target: FillTarget, offset: number): Promise<FillResponse> => {
    const end = target.size - 1
    const reader = await objects.openRange(target.sha256, offset, end)
    if (reader === undefined) throw new UpstreamError(`store:${target.sha256}`, 'gone from the store since it was found there')
    const headers = offset > 0 ? { 'content-range': `bytes ${offset}-${end}/${target.size}` } : { 'content-length': String(target.size) }
    return { url: `store:${target.sha256}`, status: offset > 0 ? 206 : 200, headers, body: rangeStream(storedRange(reader, offset, end)), from: 'store' }
  }

  return async function planFill(target: FillTarget, upstream: FillSource, signal: AbortSignal): Promise<FillPlan> {
    const name = claimName(target.sha256)
    const since = Date.now()
    const newClaim = (): FillClaim => ({ owner: replica.id, advertise: replica.advertise, size: target.size, path: target.path, expiresAt: Date.now() + claimTtlMs, since })
    let role: FleetRole | undefined
    let etag: string | undefined
    let renewal: NodeJS.Timeout | undefined
    let ended = false

    const own = (newEtag: string) => {
      etag = newEtag
      role = { role: 'owner' }
      renewal = setInterval(() => void renew(), claimTtlMs / 3)
      renewal.unref()
    }
    let renewing = false
    const renew = async () => {
      if (renewing || etag === undefined) return
      renewing = true
      try {
        const renewed = await records.replace(name, newClaim(), etag)
        if (ended) return
        if (renewed === undefined) {
          // Not renewed in time (the store was slow or down) and taken over: the other replica owns it now.
          log.warn('fleet claim lost', { path: target.path, sha256: target.sha256 })
          clearInterval(renewal)
          etag = undefined
        } else {
          etag = renewed
        }
      } catch (error) {
        log.warn('fleet claim not renewed, will retry', { path: target.path, error: (error as Error).message })
      } finally {
        renewing = false
      }
    }
    const end = async () => {
      ended = true
      clearInterval(renewal)
      if (etag === undefined) return
      etag = undefined
      await records.remove(name).catch((error: Error) => log.warn('fleet claim not removed, it expires', { path: target.path, error: error.message }))
    }
    const storedSize = () => objects.head(target.sha256)

    // Both at once, one round trip: a fill another replica committed a moment ago is stored, not claimed.
    const [size, created] = await Promise.all([storedSize(), records.create(name, newClaim())])
    if (created !== undefined) own(created)
    if (size === target.size) {
      await end()
      return { stored: true, source: upstream, storedElsewhere: false, role: () => undefined, end }
    }
    if (created !== undefined) return { stored: false, source: upstream, storedElsewhere: false, role: () => role, end }

    let followed = false
    /** The bytes from `offset`, from the owner while it lives, else from the bucket or, owning the claim now, from upstream. */
    const follow: FillSource = async (offset) => {
      const deadline = Date.now() + patienceMs
      let lastProblem = 'the claim could not be read'
      for (;;) {
        if (etag !== undefined) return upstream(offset)
        if (signal.aborted) throw signal.reason as Error
        const current = await records.read<FillClaim>(name)
        if (current === undefined) {
          if ((await storedSize()) === target.size) return fromStore(target, offset)
          // The owner's fill failed: whoever claims it first fills it.
          const claimed = await records.create(name, newClaim())
          if (claimed !== undefined) {
            own(claimed)
            log.info('fleet fill claimed after its owner failed', { path: target.path, offset })
            continue
          }
        } else if (current.value.expiresAt <= Date.now()) {
          const taken = await records.replace(name, newClaim(), current.etag)
          if (taken !== undefined) {
            own(taken)
            options.onTakeover?.()
            log.warn('fleet fill taken over', { path: target.path, from: current.value.advertise, offset })
            continue
          }
        } else if (current.value.owner !== replica.id) {
          role = { role: 'follower', owner: current.value.advertise }
          try {
            const response = await openPeerFill({ advertise: current.value.advertise, secret: replica.secret, sha256: target.sha256, offset, idleMs: patienceMs })
            if (!followed) options.onPeerFill?.()
            followed = true
            return response
          } catch (error) {
            lastProblem = (error as Error).message
          }
        }
        if (Date.now() >= deadline) throw new UpstreamError(name, `no replica passed the file on, nor did its claim expire, within ${patienceMs} ms: ${lastProblem}`)
        await sleep(pollMs, undefined, { signal })
      }
    }
    // The owner is named once the claim is read, when the source is first called.
    role = { role: 'follower', owner: '' }
    return { stored: false, source: follow, storedElsewhere: true, role: () => role, end }
  }
}
