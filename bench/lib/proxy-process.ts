/**
 * The proxy as production runs it: compiled once into `.bench/proxy` and
 * started as `node .bench/proxy/dist/cli.js --config FILE serve` in a child
 * process of its own, so its CPU and memory are its own and its RSS can be
 * read from /proc.
 */

import { spawn, execFile } from 'node:child_process'
import { copyFile, mkdir, open, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { get } from './http-client.js'

export const MIRROR_PATH = '/maas/images/ephemeral-v3/stable/'

const ROOT = new URL('../../', import.meta.url).pathname
const BUILD_DIR = join(ROOT, '.bench', 'proxy')

/**
 * Compiles src/ into .bench/proxy/dist (not dist/, which is the project's).
 * `readVersion` reads `../../package.json` from dist/cli/, and the configuration
 * is checked against `../../config.schema.json` from dist/config/, hence the copies.
 */
export async function buildProxy(): Promise<void> {
  await rm(BUILD_DIR, { recursive: true, force: true })
  await mkdir(BUILD_DIR, { recursive: true })
  for (const file of ['package.json', 'config.schema.json']) await copyFile(join(ROOT, file), join(BUILD_DIR, file))
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  await promisify(execFile)(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(BUILD_DIR, 'dist'), '--sourceMap', 'false'], { cwd: ROOT })
}

export interface ProxyProcessOptions {
  upstreamUrl: string
  keyringPath: string
  /** Holds the config, data directory and log. */
  dir: string
  /** Extra `node` flags, such as `--cpu-prof`. */
  nodeArgs?: string[]
  /** The configuration's `store` (default: the filesystem store under the data directory). */
  store?: Record<string, unknown>
  /** Added to the proxy's environment (an S3 store's credentials). */
  env?: Record<string, string>
}

export interface ProxyProcess {
  /** `http://127.0.0.1:PORT` plus the mirror path. */
  mirrorUrl: string
  /** `/status`, whose JSON reports prefetch passes. */
  statusUrl: string
  pid: number
  dataDir: string
  /** SIGTERM, then waits for the exit (the proxy drains and closes its store). */
  close(): Promise<void>
}

export async function startProxyProcess(options: ProxyProcessOptions): Promise<ProxyProcess> {
  const port = await freePort()
  const dataDir = join(options.dir, 'data')
  const configPath = join(options.dir, 'config.json')
  await mkdir(options.dir, { recursive: true })
  await writeFile(
    configPath,
    JSON.stringify({
      listen: { host: '127.0.0.1', port },
      dataDir,
      signingKey: join(dataDir, 'signing-key.asc'),
      metadataTtl: '1h',
      prefetch: { onStart: false, interval: '24h', concurrency: 4 },
      ...(options.store === undefined ? {} : { store: options.store }),
      // No selections: every upstream file is served, so each benchmark picks its own.
      mirrors: [{ name: 'bench', path: MIRROR_PATH, upstream: options.upstreamUrl, keyring: options.keyringPath, metadata: 'filtered', publish: 'selected', selections: [] }],
    }),
  )
  // The log goes to a file as it would to journald: one line per request is part of the cost measured.
  const log = await open(join(options.dir, 'proxy.log'), 'w')
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), join(BUILD_DIR, 'dist', 'cli.js'), '--config', configPath, 'serve'], {
    cwd: options.dir,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', log.fd, 'inherit'],
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const mirrorUrl = `http://127.0.0.1:${port}${MIRROR_PATH}`
  const deadline = Date.now() + 30_000
  for (;;) {
    const ready = await get(`${mirrorUrl}streams/v1/index.sjson`).then(
      (transfer) => transfer.status === 200,
      () => false,
    )
    if (ready) break
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill()
      await log.close()
      throw new Error(`proxy did not serve ${mirrorUrl}streams/v1/index.sjson within 30 s; see ${join(options.dir, 'proxy.log')}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    mirrorUrl,
    statusUrl: `http://127.0.0.1:${port}/status`,
    pid: child.pid ?? 0,
    dataDir,
    async close() {
      child.kill('SIGTERM')
      await exited
      await log.close()
    },
  }
}

/** A port nothing listens on now; the kernel hands it out, we close and reuse it. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}
