/**
 * The validated configuration: what `loadConfig` returns once every key has
 * been checked. Durations are in seconds; paths are absolute; filters are parsed.
 */

import type { Filter } from '../streams/filter.js'

export interface SelectionConfig {
  filters: Filter[]
  /** Newest versions kept per product; undefined keeps every version. */
  max?: number
}

export type MetadataMode = 'filtered' | 'upstream'
export type PublishMode = 'selected' | 'cached'

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
  /** An empty list selects everything upstream. */
  selections: SelectionConfig[]
}

export interface PrefetchConfig {
  onStart: boolean
  /** Seconds between passes. */
  interval: number
  concurrency: number
}

/** Bounds on what upstream may cost the proxy. */
export interface LimitsConfig {
  /** Bytes a metadata document may have; the transfer is cut past them. */
  metadataMaxBytes: number
  /** Seconds a metadata document fetch may take in all. */
  metadataTimeout: number
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
  limits: LimitsConfig
  mirrors: MirrorConfig[]
  /** Where the configuration came from: a file path, or `built-in default`. */
  source: string
}
