/**
 * What one client connection may hold. Node parses every request a client
 * pipelines and queues each response until the ones before it have ended, so
 * a connection that writes thousands of requests and never reads would queue
 * thousands of responses. Here a connection holds at most `maxInFlight`
 * requests; a response does its costly work (opening a file, taking read
 * buffers) only once it is at the head of its connection (`mayWrite`); and a
 * connection has one signal, aborted when it closes, which a queued response
 * needs: Node neither closes it nor settles its writes when its client leaves.
 */

import { setMaxListeners } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Logger } from '../log/logger.js'

interface ConnectionState {
  /** Requests admitted whose response has not closed. */
  inFlight: number
  /** Requests read after the connection was refused; none is answered. */
  ignored: number
  refused: boolean
  left: AbortController
}

const connections = new WeakMap<Socket, ConnectionState>()

function stateOf(socket: Socket): ConnectionState {
  let state = connections.get(socket)
  if (state === undefined) {
    const left = new AbortController()
    // One listener per queued response, bounded by the pipeline limit.
    setMaxListeners(0, left.signal)
    state = { inFlight: 0, ignored: 0, refused: false, left }
    connections.set(socket, state)
    // One listener per connection, however many responses it queues.
    if (socket.destroyed) left.abort()
    else socket.once('close', () => left.abort())
  }
  return state
}

/** Aborted once the connection closes: how a queued response learns that its client left. */
export function connectionClosed(socket: Socket): AbortSignal {
  return stateOf(socket).left.signal
}

/**
 * Resolves true once `response` is at the head of its connection and may
 * write (Node gives it the socket), false if the connection closes first.
 */
export function mayWrite(response: ServerResponse, socket: Socket): Promise<boolean> {
  if (response.socket !== null) return Promise.resolve(true)
  const signal = connectionClosed(socket)
  if (signal.aborted) return Promise.resolve(false)
  return new Promise((resolve) => {
    const onSocket = () => {
      signal.removeEventListener('abort', onLeft)
      resolve(true)
    }
    const onLeft = () => {
      response.off('socket', onSocket)
      resolve(false)
    }
    response.once('socket', onSocket)
    signal.addEventListener('abort', onLeft, { once: true })
  })
}

export interface PipelineLimitOptions {
  /** Requests one connection may have in flight (`limits.pipelinedRequests`), read per request so a reload applies at once. */
  maxInFlight: () => number
  log: Logger
}

/** Seconds a refused client is told to wait before it asks again on a new connection. */
const REFUSED_RETRY_AFTER_SECONDS = 1
const REFUSED_BODY = 'too many pipelined requests on one connection\n'

/**
 * Returns a gate for each request: true lets it be answered. The request
 * past the limit is answered 503 with `Connection: close` (after the ones
 * before it, as HTTP/1.1 demands) and the connection stops reading; requests
 * read after it are never answered, and a client that sends another
 * `maxInFlight` of them is cut at once, so that even bytes Node had already
 * read cost a bounded amount.
 */
export function createPipelineLimit(options: PipelineLimitOptions) {
  const { log } = options
  return function admitRequest(request: IncomingMessage, response: ServerResponse): boolean {
    const maxInFlight = options.maxInFlight()
    const socket = request.socket
    const state = stateOf(socket)
    if (state.refused) {
      if (++state.ignored >= maxInFlight) socket.destroy()
      return false
    }
    if (state.inFlight >= maxInFlight) {
      state.refused = true
      socket.pause()
      log.warn('too many pipelined requests', { client: socket.remoteAddress, limit: maxInFlight })
      response.writeHead(503, {
        connection: 'close',
        'retry-after': String(REFUSED_RETRY_AFTER_SECONDS),
        'content-type': 'text/plain; charset=utf-8',
        'content-length': String(Buffer.byteLength(REFUSED_BODY)),
      })
      response.end(REFUSED_BODY)
      return false
    }
    state.inFlight++
    response.once('close', () => state.inFlight--)
    return true
  }
}
