/**
 * A real HAProxy (Debian's package) on 127.0.0.1 running the configuration
 * this repository ships, contrib/haproxy/sstream-proxy.cfg, in front of the
 * test's replicas. Only what ties the file to a host is rewritten: the
 * `bind` address, the `server` lines (the replicas' ports), the `global`
 * lines for a system service (syslog, chroot, user, daemon, its stats
 * socket; one of the test's own takes its place, for `serverStates`), and,
 * when a test asks, `balance roundrobin` instead of the path hash.
 */

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, stopChild, waitForListener } from './child-listener.js'

const SHIPPED_CONFIG = new URL('../../contrib/haproxy/sstream-proxy.cfg', import.meta.url)
// Debian installs it in /usr/sbin, which a non-root PATH may lack.
const HAPROXY = existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy'
/** `global` keywords that bind HAProxy to a system service on its host. */
const HOST_ONLY = new Set(['log', 'chroot', 'user', 'group', 'daemon', 'stats'])

export interface HaproxyOptions {
  /** The replicas' ports on 127.0.0.1, in `server` order (named replica1, replica2, ...). */
  replicaPorts: readonly number[]
  /** `roundrobin` replaces the shipped path hash. */
  balance?: 'shipped' | 'roundrobin'
}

export interface Haproxy {
  /** `http://127.0.0.1:PORT` */
  url: string
  /** The configuration as started. */
  config: string
  /** Each replica's state as HAProxy sees it (`UP`, `DOWN`, ...), by server name. */
  serverStates(): Promise<Record<string, string>>
  close(): Promise<void>
}

/**
 * The shipped configuration for these ports. Throws when the file no longer
 * has what is rewritten, so the test never runs a configuration of its own.
 */
export function rewriteShippedConfig(shipped: string, options: HaproxyOptions & { port: number; statsSocket: string }): string {
  const out: string[] = []
  let section = ''
  let bound = 0
  let serversPlaced = false
  let balanced = false
  for (const line of shipped.split('\n')) {
    const words = line.trim().split(/\s+/)
    const keyword = line.trim().startsWith('#') ? '#' : (words[0] ?? '')
    if (/^\S/.test(line)) section = keyword
    if (section === 'global' && HOST_ONLY.has(keyword)) continue
    if (keyword === 'bind') {
      out.push(`    bind 127.0.0.1:${options.port}`)
      bound++
    } else if (keyword === 'server') {
      if (!serversPlaced) out.push(...options.replicaPorts.map((port, i) => `    server replica${i + 1} 127.0.0.1:${port}`))
      serversPlaced = true
    } else if (keyword === 'balance') {
      balanced = true
      out.push(options.balance === 'roundrobin' ? '    balance roundrobin' : line)
    } else {
      out.push(line)
    }
    if (line === 'global') out.push(`    stats socket ${options.statsSocket} level admin`)
  }
  if (bound !== 1 || !serversPlaced || !balanced || !out.some((line) => line.startsWith('    stats socket'))) {
    throw new Error(`${SHIPPED_CONFIG.pathname}: expected a global section, one bind line, server lines and a balance line to rewrite`)
  }
  return out.join('\n')
}

export async function startHaproxy(options: HaproxyOptions): Promise<Haproxy> {
  const dir = await mkdtemp(join(tmpdir(), 'sstream-haproxy-'))
  const port = await freePort()
  const statsSocket = join(dir, 'admin.sock')
  const config = rewriteShippedConfig(await readFile(SHIPPED_CONFIG, 'utf8'), { ...options, port, statsSocket })
  const configPath = join(dir, 'haproxy.cfg')
  await writeFile(configPath, config)
  // -db: stay in the foreground, whatever the configuration says.
  const child = spawn(HAPROXY, ['-db', '-f', configPath], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const spawned = await new Promise<Error | undefined>((resolve) => {
    child.once('spawn', () => resolve(undefined))
    child.once('error', resolve)
  })
  if (spawned !== undefined) {
    await rm(dir, { recursive: true, force: true })
    const missing = (spawned as NodeJS.ErrnoException).code === 'ENOENT'
    throw new Error(missing ? `${HAPROXY} not found: install Debian's haproxy package (apt-get install haproxy; .ci/run does)` : `starting ${HAPROXY}: ${spawned.message}`)
  }
  const stop = async () => {
    await stopChild(child)
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await waitForListener('haproxy', port, child, async () => stderr)
  } catch (error) {
    await stop()
    throw error
  }
  return {
    url: `http://127.0.0.1:${port}`,
    config,
    async serverStates() {
      // `show stat` is CSV with a header line naming the columns.
      const [header = '', ...rows] = (await adminCommand(statsSocket, 'show stat')).split('\n').filter((line) => line !== '')
      const columns = header.replace(/^# /, '').split(',')
      const at = (name: string) => columns.indexOf(name)
      const states: Record<string, string> = {}
      for (const row of rows.map((text) => text.split(','))) {
        const server = row[at('svname')] ?? ''
        if (server !== 'FRONTEND' && server !== 'BACKEND') states[server] = row[at('status')] ?? ''
      }
      return states
    },
    close: stop,
  }
}

function adminCommand(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath)
    let answer = ''
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()))
    socket.once('end', () => resolve(answer))
    socket.once('error', reject)
    socket.end(`${command}\n`)
  })
}
