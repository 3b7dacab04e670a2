/**
 * A real HTTP(S) server on 127.0.0.1 that answers every request with the
 * redirect its rule gives for the path (404 when none), and records what it
 * was asked (path, Range, Authorization): for tests of redirects from
 * upstream.
 */

import { createServer } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

export interface Redirect {
  status: 301 | 302 | 303 | 307 | 308
  location: string
}

export interface RedirectorRequest {
  path: string
  range?: string
  authorization?: string
}

export interface Redirector {
  /** `http://127.0.0.1:PORT/` (or `https://`). */
  url: string
  /** Every request so far, in order. */
  requests: RedirectorRequest[]
  close(): Promise<void>
}

export interface RedirectorOptions {
  /** Where `path` (with its leading `/`) is sent; undefined answers 404. */
  rule: (path: string) => Redirect | undefined
  /** PEM certificate and key: serve https. */
  tls?: { cert: Buffer; key: Buffer }
}

export async function startRedirector(options: RedirectorOptions): Promise<Redirector> {
  const requests: RedirectorRequest[] = []
  const sockets = new Set<Socket>()
  const answer = (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://redirector').pathname
    requests.push({ path, ...(req.headers.range && { range: req.headers.range }), ...(req.headers.authorization && { authorization: req.headers.authorization }) })
    const redirect = options.rule(path)
    if (redirect === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('no rule\n')
      return
    }
    res.writeHead(redirect.status, { location: redirect.location, 'content-type': 'text/plain' }).end(`see ${redirect.location}\n`)
  }
  const server = options.tls === undefined ? createServer(answer) : createTlsServer(options.tls, answer)
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    url: `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}/`,
    requests,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const socket of sockets) socket.destroy()
      await closed
    },
  }
}
