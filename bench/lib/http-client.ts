/**
 * A deliberately thin HTTP/1.1 GET client for large bodies: one raw socket
 * per transfer, reading into one reused buffer and only counting bytes, so
 * the client spends as little CPU as possible and the server is what is
 * measured. Bodies must carry a Content-Length (proxy, nginx and the
 * synthetic upstream all send one).
 */

import { connect } from 'node:net'

export interface Transfer {
  status: number
  /** Body bytes received. */
  bytes: number
  /** From the start of the request (connect included) to the first response byte. */
  ttfbMs: number
  /** From the start of the request to the last body byte. */
  ms: number
}

const READ_BUFFER_BYTES = 256 * 1024
const HEADER_END = Buffer.from('\r\n\r\n')

export function get(url: string): Promise<Transfer> {
  const { hostname, port, pathname, search } = new URL(url)
  const started = performance.now()
  return new Promise((resolve, reject) => {
    let ttfbMs = -1
    let head = Buffer.alloc(0)
    let status = 0
    let length = -1
    let bytes = 0
    let done = false
    const finish = (error?: Error) => {
      if (done) return
      done = true
      socket.destroy()
      if (error !== undefined) reject(error)
      else resolve({ status, bytes, ttfbMs, ms: performance.now() - started })
    }
    const socket = connect({
      host: hostname,
      port: Number(port),
      onread: {
        buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
        callback(size, buffer) {
          if (ttfbMs < 0) ttfbMs = performance.now() - started
          if (length < 0) {
            head = Buffer.concat([head, buffer.subarray(0, size)])
            const end = head.indexOf(HEADER_END)
            if (end < 0) return true
            const text = head.subarray(0, end).toString('latin1')
            status = Number(text.slice(9, 12))
            const match = /\r\ncontent-length:\s*(\d+)/i.exec(text)
            if (match === null) {
              finish(new Error(`${url}: response ${status} has no content-length header`))
              return false
            }
            length = Number(match[1])
            bytes = head.length - end - HEADER_END.length
          } else {
            bytes += size
          }
          if (bytes >= length) finish()
          return true
        },
      },
    })
    socket.setNoDelay(true)
    socket.on('error', (error) => finish(error))
    socket.on('end', () => finish(new Error(`${url}: connection ended after ${bytes} of ${length} body bytes`)))
    socket.write(`GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n\r\n`)
  })
}

/** Every URL fetched at once; resolves with each transfer and the wall time of them all. */
export async function getAll(urls: readonly string[]): Promise<{ transfers: Transfer[]; ms: number }> {
  const started = performance.now()
  const transfers = await Promise.all(urls.map((url) => get(url)))
  return { transfers, ms: performance.now() - started }
}
