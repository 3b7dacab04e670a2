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

/** A `ca` key as it applies to a mirror: a PEM file and whether it adds to Node's roots or replaces them. */
export interface CaConfig {
  /** Absolute. */
  path: string
  mode: 'add' | 'replace'
  /** The key it was given by (`ca` or `mirrors[0].ca`), for messages. */
  key: string
}

export interface MirrorConfig {
  name: string
  /** URL path prefix, starting and ending with `/`. */
  path: string
  /**
   * The upstreams, each ending with `/`, tried in this order (the file's
   * `upstream`, one URL or a list); never empty. http(s) URLs, or `file:` for
   * a directory (an absolute path is turned into one).
   */
  upstreams: string[]
  /** Seconds an upstream that failed is skipped while another is tried. */
  upstreamCooldown: number
  /** `mirrors[].proxy`, else the top-level `proxy`: a proxy URL, or false for none; undefined follows HTTPS_PROXY/HTTP_PROXY/NO_PROXY. */
  proxy?: string | false
  /** `mirrors[].ca`, else the top-level `ca`; undefined trusts Node's roots (and NODE_EXTRA_CA_CERTS). */
  ca?: CaConfig
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

export interface ListenConfig {
  host: string
  port: number
  /** Absolute paths of the PEM certificate chain and key; present, the server speaks https. */
  tls?: { cert: string; key: string }
  /** Addresses and CIDRs that may fetch metadata and files; undefined allows everyone. */
  allow?: string[]
  /** Addresses and CIDRs that may read /status and /metrics; undefined uses `allow`. */
  allowStatus?: string[]
}

/** Bounds on what one client or an upstream may cost the proxy. */
export interface LimitsConfig {
  /** Requests one client connection may have in flight (pipelined) before it is refused. */
  pipelinedRequests: number
  /** Bytes a metadata document may have; the transfer is cut past them. */
  metadataMaxBytes: number
  /** Seconds a metadata document fetch may take in all. */
  metadataTimeout: number
  /** Bytes the read buffers of every file download may take together; downloads read with smaller buffers, then wait, rather than pass it. */
  readBufferMemory: number
  /** Bytes per second over every upstream transfer; undefined for no cap. */
  upstreamRate?: number
}

/** Where cached files live. The SQLite index stays in `dataDir` either way. */
export type StoreConfig =
  | { type: 'filesystem' }
  | {
      type: 's3'
      /** URL of the S3 API, e.g. a Ceph RADOS Gateway. */
      endpoint: string
      bucket: string
      /** Prepended to every object's key (its sha256); empty or ending with `/`. */
      prefix: string
      region: string
      /** Path-style URLs (`endpoint/bucket/key`), as RGW needs without wildcard DNS. */
      forcePathStyle: boolean
      /** Seconds after which a multipart upload no fill owns is aborted. */
      abandonedUploadAge: number
    }

/** This proxy as one replica of a fleet sharing an S3 store (docs/fleet.md). */
export interface FleetConfig {
  /** The URL other replicas reach this one at, ending with `/`. */
  advertise: string
  /** Absolute path of the file holding the fleet's shared secret. */
  secretFile: string
  /** Seconds a fill claim lasts without renewal. */
  claimTtl: number
  /** Seconds a prefetch/GC lease lasts without renewal. */
  leaseTtl: number
}

export interface Config {
  listen: ListenConfig
  /** Absolute. */
  dataDir: string
  store: StoreConfig
  /** Present when this proxy is one replica of a fleet (the store is then S3). */
  fleet?: FleetConfig
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
