/**
 * The replicas of a fleet, each a record `replicas/<id>` it renews every
 * leaseTtl/3 and removes when it stops cleanly (one that dies lapses after
 * leaseTtl). A record says what must be the same on every replica of a
 * bucket: the signing key (else MAAS sees a different signature from each)
 * and the mirrors (else each collects the others' files as garbage). A
 * replica joining a fleet that disagrees is refused before it serves; one
 * that appears later (its start raced ours) is logged as an error when it is
 * first seen, and shown on /status while it lives.
 */

import { createHash } from 'node:crypto'
import type { MirrorConfig } from '../config/types.js'
import { ConfigError } from '../config/validate-config.js'
import type { Logger } from '../log/logger.js'
import type { Replica } from './replica.js'

/** What a replica says of itself in `replicas/<id>`. */
export interface ReplicaRecord {
  id: string
  advertise: string
  /** ISO. */
  startedAt: string
  /** Epoch ms. */
  expiresAt: number
  signingKeyFingerprint: string
  /** Digest of `mirrors`: equal digests, equal mirrors. */
  mirrorsDigest: string
  /** Each mirror's settings digest by name, to say which mirror differs. */
  mirrors: Record<string, string>
  version: string
}

export interface LiveReplica extends ReplicaRecord {
  /** This process. */
  self: boolean
  /** What this replica disagrees with us on, in a sentence; null when it agrees. */
  disagrees: string | null
}

export interface ReplicaRegistryOptions {
  replica: Replica
  signingKeyFingerprint: string
  mirrors: readonly MirrorConfig[]
  version: string
  /** The configuration file, for the refusal's message. */
  source: string
  log: Logger
  now?: () => number
}

export interface ReplicaRegistry {
  /**
   * Refuses, with a `ConfigError` naming `signingKey` or `mirrors` and the
   * replica, to join a fleet whose live replicas disagree with this one;
   * otherwise writes this replica's record and renews it from then on.
   */
  join(): Promise<void>
  /** The live replicas as of the last heartbeat, this one included. */
  replicas(): LiveReplica[]
  /**
   * Says the mirrors a reload put in force, at once: while a change is rolled
   * out replica by replica they disagree (logged), and once every replica has
   * it a new one with the new mirrors is let in.
   */
  mirrorsChanged(mirrors: readonly MirrorConfig[]): Promise<void>
  /** Stops the heartbeat and removes this replica's record. */
  leave(): Promise<void>
}

/** What of a mirror's configuration must be the same on every replica: what it serves and where from. */
function mirrorSettings(mirror: MirrorConfig) {
  return {
    name: mirror.name,
    path: mirror.path,
    upstreams: mirror.upstreams,
    metadata: mirror.metadata,
    publish: mirror.publish,
    selections: mirror.selections.map((selection) => ({ filters: selection.filters.map((filter) => filter.source), max: selection.max ?? null })),
  }
}

const sha256 = (value: unknown) => createHash('sha256').update(JSON.stringify(value)).digest('hex')

export function mirrorDigests(mirrors: readonly MirrorConfig[]): { mirrorsDigest: string; mirrors: Record<string, string> } {
  const byName = Object.fromEntries([...mirrors].sort((a, b) => a.name.localeCompare(b.name)).map((mirror) => [mirror.name, sha256(mirrorSettings(mirror))]))
  return { mirrorsDigest: sha256(byName), mirrors: byName }
}

/** Why `other` cannot share a bucket with `self`, naming the key: undefined when it can. */
export function disagreement(self: ReplicaRecord, other: ReplicaRecord): { key: 'signingKey' | 'mirrors'; problem: string } | undefined {
  const who = `replica ${other.id} at ${other.advertise} (started ${other.startedAt})`
  if (other.signingKeyFingerprint !== self.signingKeyFingerprint) {
    return {
      key: 'signingKey',
      problem: `${who} signs with key ${other.signingKeyFingerprint}, this one with ${self.signingKeyFingerprint}: every replica of a bucket must read the same key file`,
    }
  }
  if (other.mirrorsDigest !== self.mirrorsDigest) {
    const names = [...new Set([...Object.keys(self.mirrors), ...Object.keys(other.mirrors)])].sort()
    const differences = names.flatMap((name) => {
      const ours = self.mirrors[name]
      const theirs = other.mirrors[name]
      if (ours === theirs) return []
      return [ours === undefined ? `${name} only there` : theirs === undefined ? `${name} only here` : `${name} set differently`]
    })
    return { key: 'mirrors', problem: `differ from those of ${who}: ${differences.join(', ')}; every replica of a bucket must have the same mirrors` }
  }
  return undefined
}

export function createReplicaRegistry(options: ReplicaRegistryOptions): ReplicaRegistry {
  const { replica, log } = options
  const { records, leaseTtlMs } = replica
  const now = options.now ?? Date.now
  const name = `replicas/${replica.id}`
  let self: ReplicaRecord = {
    id: replica.id,
    advertise: replica.advertise,
    startedAt: new Date(now()).toISOString(),
    expiresAt: 0,
    signingKeyFingerprint: options.signingKeyFingerprint,
    ...mirrorDigests(options.mirrors),
    version: options.version,
  }
  let seen: LiveReplica[] = []
  let etag: string | undefined
  let timer: NodeJS.Timeout | undefined
  let beating: Promise<void> = Promise.resolve()

  async function live(): Promise<ReplicaRecord[]> {
    const names: string[] = []
    for await (const record of records.list('replicas/')) names.push(record)
    const found = await Promise.all(names.map(async (record) => (await records.read<ReplicaRecord>(record))?.value))
    return found.filter((record): record is ReplicaRecord => record !== undefined && record.expiresAt > now())
  }

  /** Writes our record with a fresh expiry: a replace of our version, or a create when it went (the store lost it, or a stall let it lapse and someone removed it). */
  async function write(): Promise<void> {
    const value = { ...self, expiresAt: now() + leaseTtlMs }
    etag = (etag === undefined ? undefined : await records.replace(name, value, etag)) ?? (await records.create(name, value))
    if (etag === undefined) {
      const current = await records.read(name)
      etag = current === undefined ? undefined : await records.replace(name, value, current.etag)
    }
  }

  async function heartbeat(): Promise<void> {
    try {
      await write()
      const others = await live()
      const previous = new Set(seen.filter((other) => other.disagrees !== null).map((other) => other.id))
      seen = others.map((other) => {
        const problem = other.id === self.id ? undefined : disagreement(self, other)
        return { ...other, self: other.id === self.id, disagrees: problem === undefined ? null : `${problem.key}: ${problem.problem}` }
      })
      for (const other of seen) {
        if (other.disagrees !== null && !previous.has(other.id)) log.error('fleet: a replica disagrees with this one', { replica: other.id, advertise: other.advertise, problem: other.disagrees })
      }
    } catch (error) {
      log.warn('fleet: replica record not renewed', { error: (error as Error).message })
    }
  }

  return {
    async join() {
      for (const other of await live()) {
        const problem = disagreement(self, other)
        if (problem !== undefined) throw new ConfigError(options.source, problem.key, problem.problem)
      }
      await heartbeat()
      timer = setInterval(() => {
        beating = beating.then(heartbeat)
      }, leaseTtlMs / 3)
      timer.unref()
    },
    replicas: () => seen,
    async mirrorsChanged(mirrors) {
      self = { ...self, ...mirrorDigests(mirrors) }
      const beat = beating.then(heartbeat)
      beating = beat
      await beat
    },
    async leave() {
      if (timer !== undefined) clearInterval(timer)
      await beating
      try {
        await records.remove(name)
      } catch (error) {
        log.warn('fleet: replica record not removed, it lapses by itself', { error: (error as Error).message })
      }
    },
  }
}
