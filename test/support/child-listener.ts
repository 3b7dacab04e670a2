/**
 * For tests that start a server program as a child (squid, haproxy): a free
 * port on 127.0.0.1 to give it, a wait until it listens there that fails
 * with the program's own words when it exits instead, and a stop.
 */

import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { connect, createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (typeof address !== 'object' || address === null) throw new Error('no port')
  return address.port
}

/** Polls until `name` accepts connections on `port` (up to 15 s); `output` says what it printed or logged. */
export async function waitForListener(name: string, port: number, child: ChildProcess, output: () => Promise<string>): Promise<void> {
  for (let attempt = 0; attempt < 150; attempt++) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}: ${await output()}`)
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (up) return
    await sleep(100)
  }
  throw new Error(`${name} did not listen on port ${port} within 15 s: ${await output()}`)
}

/** SIGTERM, and SIGKILL if the program has not exited 5 s later. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  await Promise.race([exited, sleep(5_000)])
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}
