/**
 * The validated configuration: what `loadConfig` returns once every key has
 * been checked. Durations are in seconds; paths are absolute; filters are parsed.
 */

import type { Filter } from '../streams/filter.js'
import type { TimeWindow } from '../prefetch/windows.js'

export interface SelectionConfig {
  filters: Filter[]
  /** Newest versions kept per product; undefined keeps every version. */
  max?: number
}

export type MetadataMode = 'filtered' | 'upstream'
export type PublishMode = 'selected' | 'cached'
/** How a miss whose upstream gave no byte within `missWait` is answered: a broken connection, or `503`. */
export type MissFailure = 'reset' | '503'

export interface MirrorConfig {
  name: string
  /** URL path prefix, starting and ending with `/`. */
  path: string
  /** Upstream base URL, always ending with `/`. */
  upstream: string
  /** Absolute path of the OpenPGP keyring that verifies upstream `.sjson`. */
  keyring: string
  /** True when the keyring is the built-in default and may be missing (a warning, not an error). */
  keyringIsDefault: boolean
  metadata: MetadataMode
  publish: PublishMode
  missFailure: MissFailure
  /** Seconds a miss keeps trying upstream for a first byte before `missFailure` applies. */
  missWait: number
  /** An empty list selects everything upstream. */
  selections: SelectionConfig[]
}

export interface PrefetchConfig {
  onStart: boolean
  /** Seconds between passes. */
  interval: number
  concurrency: number
  /** Bytes per second prefetch transfers may take together; undefined for no cap of their own. */
  rate?: number
  /** Local times when scheduled passes run; empty or left out for always. */
  windows?: TimeWindow[]
}

export interface LimitsConfig {
  /** Bytes per second over every upstream transfer; undefined for no cap. */
  upstreamRate?: number
}

export interface Config {
  listen: { host: string; port: number }
  /** Absolute. */
  dataDir: string
  /** Absolute path of the proxy's armored private key. */
  signingKey: string
  /** Seconds. */
  metadataTtl: number
  prefetch: PrefetchConfig
  /** Left out by configurations built in code: no limits. */
  limits?: LimitsConfig
  mirrors: MirrorConfig[]
  /** Where the configuration came from: a file path, or `built-in default`. */
  source: string
}
