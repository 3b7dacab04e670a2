/**
 * A reader that follows a fill as it grows: it reads the fill's temp file in
 * 1 MiB steps up to what the fill has released, waits for more, and fails
 * (so its client's transfer breaks rather than completes) when the fill fails.
 */

import { Readable } from 'node:stream'
import { open, type FileHandle } from 'node:fs/promises'
import type { Fill } from './fill.js'

export const READ_CHUNK_BYTES = 1024 * 1024

export interface FillReaderOptions {
  fill: Fill
  /** Where the committed file lives, for readers that arrive after the rename. */
  committedPath: string
  /** First byte, inclusive. */
  start?: number
  /** Last byte, inclusive. */
  end?: number
}

export function createFillReader(options: FillReaderOptions): Readable {
  const { fill, committedPath } = options
  const last = options.end ?? fill.target.size - 1
  let position = options.start ?? 0
  let handle: FileHandle | undefined
  let waiting: (() => void) | undefined

  const wake = () => {
    const resume = waiting
    waiting = undefined
    resume?.()
  }
  fill.on('progress', wake)

  const committed = () => fill.state === 'committed'

  async function openFile(): Promise<FileHandle> {
    if (!committed() && fill.tempPath !== undefined) {
      try {
        return await open(fill.tempPath, 'r')
      } catch (error) {
        // The fill renamed its temp file between the check and the open: it is
        // committing ('verified' until the rename and the index row are done) or committed.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || (fill.state !== 'verified' && !committed())) throw error
      }
    }
    return open(committedPath, 'r')
  }

  return new Readable({
    highWaterMark: READ_CHUNK_BYTES,
    read() {
      void (async () => {
        try {
          for (;;) {
            // A body ends only once the whole file is verified, even when its range ended
            // earlier: until then any byte passed on may be bad, and the transfer must fail.
            if (position > last && (fill.state === 'verified' || committed())) return void this.push(null)
            if (fill.state === 'failed') throw fill.error ?? new Error(`${fill.target.path}: fill failed`)
            const available = Math.min(fill.releasable, last + 1)
            if (position < available && (fill.tempPath !== undefined || fill.state === 'committed')) {
              if (handle === undefined) {
                const opened = await openFile()
                if (this.destroyed) return void (await opened.close())
                handle = opened
              }
              const length = Math.min(READ_CHUNK_BYTES, available - position)
              const buffer = Buffer.allocUnsafe(length)
              const { bytesRead } = await handle.read(buffer, 0, length, position)
              if (bytesRead === 0) throw new Error(`${fill.target.path}: temp file shorter than the fill reported`)
              position += bytesRead
              this.push(bytesRead === length ? buffer : buffer.subarray(0, bytesRead))
              return
            }
            await new Promise<void>((resolve) => {
              waiting = resolve
            })
            if (this.destroyed) return
          }
        } catch (error) {
          this.destroy(error as Error)
        }
      })()
    },
    destroy(error, callback) {
      fill.off('progress', wake)
      wake()
      const closing = handle?.close()
      handle = undefined
      void Promise.resolve(closing).catch(() => undefined).then(() => callback(error))
    },
  })
}
