/**
 * The built-in defaults: the configuration used when no file is given (product.md
 * "Set-up"), and the values that apply to keys a configuration file leaves out.
 */

import { parseByteSize } from './byte-size.js'
import { parseDuration } from './duration.js'
import type { LimitsConfig } from './types.js'

/** Ubuntu's cloud-image keyring, from the `ubuntu-cloudimage-keyring` package. */
export const STOCK_KEYRING = '/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg'

/** Debian/Ubuntu package that installs `STOCK_KEYRING`, for messages telling the operator how to get it. */
export const STOCK_KEYRING_PACKAGE = 'ubuntu-cloudimage-keyring'

/** File name of the signing key inside `dataDir` when `signingKey` is not given. */
export const SIGNING_KEY_FILE = 'signing-key.asc'

/** Values for keys a configuration file may omit, in the file's own shape. */
export const DEFAULTS = {
  listen: { host: '0.0.0.0', port: 8080 },
  dataDir: './data',
  store: { type: 'filesystem', prefix: '', region: 'us-east-1', forcePathStyle: true, abandonedUploadAge: '24h' },
  // A dead replica's fills are taken over within claimTtl (under missWait, so that
  // a client retrying meanwhile gets its first byte in time), its passes within leaseTtl.
  fleet: { claimTtl: '5s', leaseTtl: '30s' },
  metadataTtl: '10m',
  // No rate keys: upstream and prefetch take what the link gives.
  prefetch: { onStart: true, interval: '1h', concurrency: 4, windows: [] },
  // Real streams are a few MB; far above that, but bounded.
  // 32 downloads read with 1 MiB buffers, 1,000 with 32 KiB ones; bench/fan-out.ts measured 310 MB peak RSS at 1,000.
  limits: { pipelinedRequests: 32, metadataMaxBytes: '64MiB', metadataTimeout: '2m', readBufferMemory: '64MiB' },
  // A failed upstream is skipped for a few refresh retries (each 60 s), then asked again.
  // Inside MAAS's 10 s wait for a first byte, with time to spare for the reset to reach it.
  mirror: { metadata: 'filtered', publish: 'selected', missFailure: 'reset', missWait: '8s', upstreamCooldown: '5m' },
} as const

/** `DEFAULTS.limits` as a validated `Config` holds it, for configurations built in code. */
export const DEFAULT_LIMITS: LimitsConfig = {
  pipelinedRequests: DEFAULTS.limits.pipelinedRequests,
  metadataMaxBytes: parseByteSize(DEFAULTS.limits.metadataMaxBytes),
  metadataTimeout: parseDuration(DEFAULTS.limits.metadataTimeout),
  readBufferMemory: parseByteSize(DEFAULTS.limits.readBufferMemory),
}

/**
 * The configuration used without a file, in the file's shape so that it goes
 * through the same validation. It names no keyring: the stock one then applies
 * and may be missing (the server says how to install it).
 */
export const BUILT_IN_CONFIG = {
  mirrors: [
    {
      name: 'stable',
      path: '/maas/images/ephemeral-v3/stable/',
      upstream: 'https://images.maas.io/ephemeral-v3/stable/',
      selections: [
        { filters: ['arch=amd64', 'release~(jammy|noble)'], max: 1 },
        { filters: ['os~(grub*|pxelinux)'], max: 1 },
      ],
    },
  ],
} as const
