/**
 * `sstream-proxy demo` without the command line: a synthetic signed upstream
 * on 127.0.0.1 shaped like images.maas.io, and a real proxy in front of it
 * with the built-in default selection, so a newcomer sees the whole product
 * work without internet. The upstream's key is kept in the data directory so
 * a demo restarted on the same directory keeps its cache and metadata.
 */

import { join } from 'node:path'
import { hostname } from 'node:os'
import { BUILT_IN_CONFIG, DEFAULT_LIMITS } from '../config/defaults.js'
import type { Config } from '../config/types.js'
import type { Logger } from '../log/logger.js'
import { startProxy, type RunningProxy } from '../runtime.js'
import { parseFilter } from '../streams/filter.js'
import { loadOrCreateSigningKey } from '../streams/signing-key.js'
import { buildUpstreamTree } from './synthetic-tree.js'
import { startUpstreamServer, type UpstreamServer } from './synthetic-upstream.js'

export interface DemoOptions {
  dataDir: string
  /** Where the proxy listens; default 127.0.0.1. */
  host?: string
  /** Default 8080; 0 picks a free port. */
  port?: number
  log: Logger
  version: string
}

export interface Demo {
  upstream: UpstreamServer
  proxy: RunningProxy
  config: Config
  /** The upstream's public key, binary: what the proxy checks upstream's signatures with. */
  upstreamKeyring: string
  /** The proxy's mirror URL, the boot source URL MAAS is given. */
  mirrorUrl: string
  /** The items the proxy serves, by path; some examples to fetch. */
  itemPaths: string[]
  close(): Promise<void>
}

/** Small files keep the demo instant: the shape of the streams is what matters. */
const SIZES = { kernel: 64 * 1024, initrd: 256 * 1024, squashfs: 1024 * 1024, manifest: 4 * 1024, bootloader: 128 * 1024, rootTgz: 1024 * 1024 }

const UPSTREAM_PREFIX = '/ephemeral-v3/stable/'

export async function startDemo(options: DemoOptions): Promise<Demo> {
  const { dataDir } = options
  const { key } = await loadOrCreateSigningKey(join(dataDir, 'demo-upstream-key.asc'))
  const tree = await buildUpstreamTree({ key, sizes: SIZES })
  const upstreamKeyring = await tree.writeKeyring(dataDir)
  const upstream = await startUpstreamServer(tree, { prefix: UPSTREAM_PREFIX })
  const [stock] = BUILT_IN_CONFIG.mirrors
  const config: Config = {
    listen: { host: options.host ?? '127.0.0.1', port: options.port ?? 8080 },
    dataDir,
    signingKey: join(dataDir, 'signing-key.asc'),
    metadataTtl: 60,
    // Warms the selection at once: /status shows the pass and its history.
    prefetch: { onStart: true, interval: 3600, concurrency: 2 },
    store: { type: 'filesystem' },
    limits: DEFAULT_LIMITS,
    mirrors: [
      {
        name: 'stable',
        path: stock.path,
        upstreams: [upstream.url],
        upstreamCooldown: 300,
        keyring: upstreamKeyring,
        keyringIsDefault: false,
        metadata: 'filtered',
        publish: 'selected',
        missFailure: 'reset',
        missWait: 8,
        selections: stock.selections.map(({ filters, max }) => ({ filters: filters.map(parseFilter), max })),
      },
    ],
    source: 'sstream-proxy demo',
  }
  let proxy: RunningProxy
  try {
    proxy = await startProxy(config, { log: options.log, version: options.version })
  } catch (error) {
    await upstream.close()
    throw error
  }
  const publication = await proxy.core.mirrors[0]?.publication()
  const address = new URL(proxy.url)
  // A wildcard address is no URL to hand anyone: name the machine instead.
  if (['0.0.0.0', '[::]'].includes(address.hostname)) address.hostname = hostname()
  return {
    upstream,
    proxy,
    config,
    upstreamKeyring,
    mirrorUrl: new URL(stock.path, address).href,
    itemPaths: [...(publication?.files.keys() ?? [])],
    async close() {
      await proxy.close(2_000)
      await upstream.close()
    },
  }
}

/** What the demo prints once it runs: the URLs, what to try, and how MAAS would use it. */
export function demoInstructions(demo: Demo, removeDataDir: boolean): string {
  const base = new URL('/', demo.mirrorUrl).href.replace(/\/$/, '')
  const mirror = demo.mirrorUrl
  const item = demo.itemPaths.find((path) => path.endsWith('boot-kernel')) ?? demo.itemPaths[0] ?? 'PATH'
  const listening = demo.config.listen.host
  return `sstream-proxy demo: a synthetic signed upstream and a proxy in front of it.

  upstream  ${demo.upstream.url}  (synthetic, signed: Ubuntu jammy and noble, amd64 and arm64, bootloaders, centos-bases; MAAS 3.8 accepts its metadata)
  proxy     ${mirror}
  status    ${base}/status  (open it in a browser: the prefetch warms the selection now)
  metrics   ${base}/metrics
  keyring   ${base}/keyring.gpg  (the proxy's key, which signs what it serves)
  data      ${demo.config.dataDir}${removeDataDir ? '  (removed on exit)' : ''}

Try:
  curl -s ${mirror}streams/v1/index.sjson
  curl -s ${mirror}streams/v1/index.json | head -20
  curl -sI ${mirror}${item}   # X-Cache: HIT from disk, MISS fetched from upstream as it streams
  curl -s ${mirror}${item} | sha256sum
  curl -s ${base}/keyring.gpg -o proxy-keyring.gpg && curl -s ${mirror}streams/v1/index.sjson -o index.sjson && gpgv --keyring ./proxy-keyring.gpg index.sjson
  curl -s ${base}/status
  curl -s ${base}/metrics | grep -v '^#'

Point MAAS at it (PROFILE is your 'maas login' profile). MAAS checks metadata with gpgv, which takes only the binary
keyring, so give the key with the CLI (keyring_data@=FILE), not by pasting it into the web UI:
  curl -s ${base}/keyring.gpg -o /tmp/sstream-proxy.gpg
  maas $PROFILE boot-sources read
  maas $PROFILE boot-source update 1 url=${mirror} keyring_filename= keyring_data@=/tmp/sstream-proxy.gpg
  maas $PROFILE boot-source-selections create 1 os=ubuntu release=jammy arches=amd64 subarches='*' labels='*'   # optional: noble amd64 is MAAS's default
  maas $PROFILE boot-resources import
(The images are pseudo-random bytes: MAAS downloads, verifies and lists them, but they boot nothing.)
${listening === '127.0.0.1' || listening === '::1' || listening === 'localhost' ? `MAAS on another machine cannot reach ${listening}: run the demo with --host 0.0.0.0 for that.\n` : ''}
Ctrl-C stops the demo.
`
}
