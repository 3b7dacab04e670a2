/**
 * Node's own ceiling for metadata: a bare `node:http` server in a process of
 * its own, answering every request with one file's bytes held in memory and
 * the proxy's headers, with no routing, logging or counting. Measured beside
 * nginx, it shows how much of a gap is Node's HTTP stack rather than the proxy.
 */

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { freePort } from './proxy-process.js'

export interface BareNode {
  url: string
  close(): Promise<void>
}

const SERVER = `
const { createServer } = require('node:http')
const { readFileSync } = require('node:fs')
const body = readFileSync(process.argv[1])
const headers = { 'content-type': 'text/plain; charset=utf-8', etag: '"bench"', 'cache-control': 'no-cache', 'content-length': String(body.length) }
const server = createServer((request, response) => {
  response.writeHead(200, headers)
  response.end(body)
})
server.keepAliveTimeout = 30000
server.listen(Number(process.argv[2]), '127.0.0.1', () => process.stdout.write('ready\\n'))
`

/** Serves the file at `path` on every URL. */
export async function startBareNode(path: string): Promise<BareNode> {
  const port = await freePort()
  const child = spawn(process.execPath, ['-e', SERVER, path, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const [ready] = (await Promise.race([once(child.stdout, 'data'), once(child, 'exit')])) as [unknown]
  if (!String(ready).includes('ready')) throw new Error(`the bare node:http server exited (${String(ready)})`)
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      const exited = once(child, 'exit')
      child.kill()
      await exited
    },
  }
}
