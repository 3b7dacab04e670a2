/**
 * Small HTTP helpers for tests: a raw GET that sends the path exactly as
 * given (fetch would normalise `..` away) and a GET that reports how a body
 * ended (complete, or broken part-way).
 */

import http from 'node:http'
import { createHash } from 'node:crypto'

export interface RawResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
  /** False when the connection broke before the body was complete. */
  complete: boolean
  /** Milliseconds from sending the request to the first body byte (undefined when there was none). */
  firstByteMs: number | undefined
}

export function rawRequest(base: string, path: string, options: { method?: string; headers?: Record<string, string> | string[]; abortAfterBytes?: number } = {}): Promise<RawResponse> {
  const url = new URL(base)
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path, method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      let received = 0
      let firstByteMs: number | undefined
      let ended = false
      res.on('data', (chunk: Buffer) => {
        firstByteMs ??= performance.now() - started
        chunks.push(chunk)
        received += chunk.length
        if (options.abortAfterBytes !== undefined && received >= options.abortAfterBytes) req.destroy()
      })
      res.on('end', () => (ended = true))
      res.on('error', () => undefined)
      res.on('close', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: ended && res.complete, firstByteMs })
      })
    })
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (options.abortAfterBytes !== undefined) return
      // The server broke the connection before any response: a failed transfer, as a client sees it.
      if (error.code === 'ECONNRESET') return resolve({ status: 0, headers: {}, body: Buffer.alloc(0), complete: false, firstByteMs: undefined })
      reject(error)
    })
    req.end()
  })
}

export const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/** A download held after its first chunk, to check it runs on across something done meanwhile (a reload). */
export interface PausedDownload {
  /** Reads the rest; resolves to what the whole body was. */
  finish(): Promise<{ bytes: number; sha256: string }>
}

/** Waits for the first chunk of `download`, pauses it there, and hashes from the first byte. */
export async function pauseAfterFirstChunk(download: http.IncomingMessage): Promise<PausedDownload> {
  const hash = createHash('sha256')
  let bytes = 0
  const count = (chunk: Buffer) => {
    hash.update(chunk)
    bytes += chunk.length
  }
  count(await new Promise<Buffer>((resolve) => download.once('data', resolve)))
  download.pause()
  return {
    async finish() {
      download.on('data', count)
      download.resume()
      await new Promise((resolve) => download.on('end', resolve))
      return { bytes, sha256: hash.digest('hex') }
    },
  }
}
