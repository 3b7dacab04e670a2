/**
 * The proxy as an operator runs it: `sstream-proxy serve --config FILE` in a
 * child process, so that tests can `kill -9` it, restart it on the same data
 * directory, and read its memory and open files from /proc.
 */

import { spawn, type ChildProcess } from 'node:child_process'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { MIRROR_PATH } from '../../support/proxy-harness.js'

const cli = fileURLToPath(new URL('../../../src/cli.ts', import.meta.url))
// Resolved here: the child may run in a directory where `--import tsx` would not resolve.
const tsx = import.meta.resolve('tsx')

export interface ProxyConfigOptions {
  /** Where the configuration file is written. */
  dir: string
  dataDir: string
  /** The upstream mirror root URL. */
  upstream: string
  keyring: string
  selections?: Array<{ filters: string[]; max?: number }>
  prefetchOnStart?: boolean
}

/** Writes a configuration file for one mirror at `MIRROR_PATH` and returns its path. */
export async function writeProxyConfig(options: ProxyConfigOptions): Promise<string> {
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    dataDir: options.dataDir,
    metadataTtl: '10m',
    prefetch: { onStart: options.prefetchOnStart ?? false, interval: '1h', concurrency: 4 },
    mirrors: [
      {
        name: 'stable',
        path: MIRROR_PATH,
        upstream: options.upstream,
        keyring: options.keyring,
        selections: options.selections ?? [{ filters: ['release~(jammy|noble)'], max: 1 }, { filters: ['os~(grub*|pxelinux)'], max: 1 }],
      },
    ],
  }
  const path = join(options.dir, 'config.json')
  await writeFile(path, JSON.stringify(config, null, 2))
  return path
}

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface ChildProxy {
  /** `http://127.0.0.1:PORT`. */
  url: string
  pid: number
  process: ChildProcess
  /** Resolves when the process has exited, with everything it printed. */
  exited: Promise<Exit>
  /** Everything it has printed so far. */
  output(): { stdout: string; stderr: string }
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<Exit>
}

/** Runs `sstream-proxy serve --config FILE` until it exits. */
export function runServe(configPath: string): Promise<Exit> {
  return launch(configPath).exited
}

/** Starts `serve` and resolves once it logs the URL it listens on. */
export async function startChildProxy(configPath: string, timeoutMs = 15_000, env: NodeJS.ProcessEnv = {}): Promise<ChildProxy> {
  const { child, exited, output } = launch(configPath, env)
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`proxy did not listen within ${timeoutMs} ms; stderr: ${output.stderr}`))
    }, timeoutMs)
    const look = () => {
      const match = /"message":"listening".*?"url":"(http:\/\/[^"]+)"/.exec(output.stdout)
      if (match !== null) {
        clearTimeout(timer)
        child.stdout?.off('data', look)
        resolve(match[1] as string)
      }
    }
    child.stdout?.on('data', look)
    void exited.then((exit) => {
      clearTimeout(timer)
      reject(new Error(`proxy exited (${exit.code ?? exit.signal}) before listening: ${exit.stderr}`))
    })
  })
  return {
    url,
    pid: child.pid as number,
    process: child,
    exited,
    output: () => ({ ...output }),
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    },
  }
}

function launch(configPath: string, extraEnv: NodeJS.ProcessEnv = {}): { child: ChildProcess; exited: Promise<Exit>; output: { stdout: string; stderr: string } } {
  const env = { ...process.env, ...extraEnv }
  delete env.SSTREAM_PROXY_CONFIG
  const child = spawn(process.execPath, ['--import', tsx, cli, 'serve', '--config', configPath], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const output = { stdout: '', stderr: '' }
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output.stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output.stderr += chunk))
  const exited = new Promise<Exit>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => resolve({ code, signal, ...output }))
  })
  return { child, exited, output }
}

export interface ProcessSample {
  rssBytes: number
  openFds: number
}

/** Resident memory and open file descriptors of a process, from /proc. */
export async function sampleProcess(pid: number): Promise<ProcessSample> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const rssKb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? NaN)
  return { rssBytes: rssKb * 1024, openFds: (await readdir(`/proc/${pid}/fd`)).length }
}
