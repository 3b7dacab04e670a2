/**
 * A real squid (Debian's package) on 127.0.0.1 for tests of the outbound
 * proxy: started in the foreground in a temporary directory, with or without
 * basic auth, caching nothing, and logging every request it handles to an
 * access log the test reads to prove which requests went through it.
 */

import { execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { freePort, stopChild, waitForListener } from './child-listener.js'

// Debian installs it in /usr/sbin, which a non-root PATH may lack.
const SQUID = existsSync('/usr/sbin/squid') ? '/usr/sbin/squid' : 'squid'

const run = promisify(execFile)

export interface Squid {
  /** `http://127.0.0.1:PORT/`, without credentials. */
  url: string
  /** The proxy URL with the user and password of `auth` (the same as `url` without auth). */
  urlWith(user: string, password: string): string
  /** The access log's lines so far: `... TCP_MISS/200 ... GET http://127.0.0.1:PORT/path user ...` or `CONNECT 127.0.0.1:PORT`. */
  accessLog(): Promise<string[]>
  /**
   * The access log once every request finished so far is in it: squid writes a
   * line when a transaction ends, a moment after the client has its answer. A
   * marker request is sent through squid and its line waited for (up to 10 s);
   * the marker lines are left out.
   */
  settledAccessLog(): Promise<string[]>
  close(): Promise<void>
}

export interface SquidOptions {
  /** Require these basic-auth credentials (squid answers 407 without them). */
  auth?: { user: string; password: string }
}

export async function startSquid(options: SquidOptions = {}): Promise<Squid> {
  const dir = await mkdtemp(join(tmpdir(), 'sstream-squid-'))
  // squid started as root drops to the `proxy` user: it must write here and read its files.
  await chmod(dir, 0o777)
  const port = await freePort()
  const access = options.auth === undefined
    ? ['acl localnet src 127.0.0.0/8 ::1', 'http_access allow localnet']
    : [`auth_param basic program /usr/lib/squid/basic_ncsa_auth ${join(dir, 'passwd')}`, 'acl authed proxy_auth REQUIRED', 'http_access allow authed']
  if (options.auth !== undefined) {
    const { stdout } = await run('openssl', ['passwd', '-1', options.auth.password])
    await writeFile(join(dir, 'passwd'), `${options.auth.user}:${stdout.trim()}\n`, { mode: 0o644 })
  }
  const conf = join(dir, 'squid.conf')
  await writeFile(
    conf,
    [
      `http_port 127.0.0.1:${port}`,
      `pid_filename ${join(dir, 'squid.pid')}`,
      `cache_log ${join(dir, 'cache.log')}`,
      `access_log stdio:${join(dir, 'access.log')}`,
      'cache deny all',
      'cache_mem 8 MB',
      `coredump_dir ${dir}`,
      'shutdown_lifetime 0 seconds',
      ...access,
      'http_access deny all',
      '',
    ].join('\n'),
    { mode: 0o644 },
  )
  const child = spawn(SQUID, ['-N', '-f', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  await waitForListener('squid', port, child, async () => stderr + (await readFile(join(dir, 'cache.log'), 'utf8').catch(() => '')))
  const url = `http://127.0.0.1:${port}/`
  let markers = 0
  const accessLog = async () => {
    const text = await readFile(join(dir, 'access.log'), 'utf8').catch(() => '')
    return text.split('\n').filter((line) => line !== '')
  }
  return {
    url,
    urlWith: (user, password) => `http://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/`,
    accessLog,
    async settledAccessLog() {
      const marker = `http://127.0.0.1:1/squid-log-marker-${++markers}`
      await new Promise<void>((resolve) => {
        // Absolute form, as a client of the proxy asks; the answer (503, or 407 with auth) does not matter.
        const request = httpRequest({ host: '127.0.0.1', port, path: marker }, (response) => {
          response.resume()
          response.once('end', resolve)
        })
        request.once('error', () => resolve())
        request.end()
      })
      for (let waited = 0; waited < 10_000; waited += 50) {
        const lines = await accessLog()
        if (lines.some((line) => line.includes(marker))) return lines.filter((line) => !line.includes('squid-log-marker-'))
        await sleep(50)
      }
      throw new Error(`squid did not log ${marker} within 10 s`)
    },
    async close() {
      await stopChild(child)
      await rm(dir, { recursive: true, force: true })
    },
  }
}
