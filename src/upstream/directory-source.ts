/**
 * The directory implementation of `UpstreamSource`: a SimpleStreams tree on
 * disk (an export, an `sstream-mirror` tree, a mounted removable disk) read
 * with the same rules as an HTTP upstream. Paths are the same plain relative
 * paths, resolved under the root, and the real path (symlinks followed) must
 * stay under the root's real path too; only regular files are opened, so a
 * device node or FIFO in the tree is refused without being touched. Documents
 * are read under the metadata size cap and carry a validator made of size,
 * mtime and inode, so an unchanged file answers 304 and is not verified again.
 * Errors name the file on disk (`file:///...`) and carry the HTTP status
 * that means the same thing, so fills and refreshes treat them as they treat
 * HTTP: a missing or unreadable file is final (404, 403); a missing root (an
 * unmounted disk) or an I/O error counts as "upstream unreachable" and may be
 * retried. Bytes read are verified above this module exactly as bytes
 * received over HTTP are.
 */

import { constants, type Stats } from 'node:fs'
import { lstat, open, realpath, type FileHandle } from 'node:fs/promises'
import { isAbsolute, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { unsafePathReason } from '../streams/item-path.js'
import { UpstreamError } from './upstream-client.js'
import { UpstreamPathError, type DocumentResult, type FileResponse, type UpstreamSource } from './upstream-source.js'

export interface DirectorySourceOptions {
  /** The root as a `file:` URL ending with `/` (the form configuration normalises `/abs/path` to). */
  root: string
  /** Bytes a metadata document may have (`limits.metadataMaxBytes`). */
  metadataMaxBytes: number
}

/** Where every SimpleStreams tree starts (the mirror's INDEX_PATH; not imported, this layer sits below the mirror). */
const INDEX_PATH = 'streams/v1/index.sjson'

// O_NONBLOCK: opening a FIFO that slipped in between the check and the open must not hang.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK

export function createDirectorySource(options: DirectorySourceOptions): UpstreamSource {
  const rootUrl = new URL(options.root)
  if (rootUrl.protocol !== 'file:' || !rootUrl.pathname.endsWith('/')) throw new Error(`directory upstream ${options.root} must be a file: URL ending with "/"`)
  const rootDir = fileURLToPath(rootUrl)
  const { metadataMaxBytes } = options
  const describe = (relPath = '') => `${rootUrl.href}${relPath}`

  function pathProblem(relPath: string): string | undefined {
    const unsafe = unsafePathReason(relPath)
    if (unsafe !== undefined) return unsafe
    return isUnder(rootDir, resolve(rootDir, relPath)) ? undefined : 'resolves outside the upstream root path'
  }

  /**
   * Opens `relPath` for reading once it is known to be a regular file whose
   * real path is under the root's real path. The root is resolved on every
   * call: a disk mounted after start is picked up, one unmounted is reported.
   */
  async function openChecked(relPath: string): Promise<{ handle: FileHandle; stats: Stats; where: string }> {
    const problem = pathProblem(relPath)
    if (problem !== undefined) throw new UpstreamPathError(`${describe()}: path ${JSON.stringify(relPath)} ${problem}`)
    const where = describe(relPath)
    let realRoot: string
    try {
      realRoot = await realpath(rootDir)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      // No status: like a host that does not answer, so /status says "unreachable" and fills may retry.
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new UpstreamError(describe(), 'directory not found (is the disk mounted?)')
      throw diskError(describe(), error as Error)
    }
    let real: string
    try {
      real = await realpath(resolve(rootDir, relPath))
    } catch (error) {
      throw diskError(where, error as Error)
    }
    if (!isUnder(realRoot, real)) throw new UpstreamError(where, `is a symlink to ${real}, outside the upstream root; refused`, 403)
    const before = await lstat(real).catch((error: Error) => Promise.reject(diskError(where, error)))
    if (!before.isFile()) throw new UpstreamError(where, 'is not a regular file; refused', 403)
    let handle: FileHandle
    try {
      handle = await open(real, OPEN_FLAGS)
    } catch (error) {
      throw diskError(where, error as Error)
    }
    const stats = await handle.stat()
    // Replaced between the check and the open: refuse rather than read something unchecked.
    if (!stats.isFile() || stats.ino !== before.ino || stats.dev !== before.dev) {
      await handle.close()
      throw new UpstreamError(where, 'changed while being opened; try again')
    }
    return { handle, stats, where }
  }

  return {
    async getDocument(relPath, validators = {}): Promise<DocumentResult> {
      const { handle, stats, where } = await openChecked(relPath).catch((error: Error) => Promise.reject(withTreeHint(relPath, error)))
      try {
        const etag = validatorOf(stats)
        if (validators.etag === etag) return { status: 304 }
        // Status 200 as over HTTP: the document is there and too large, which no retry changes.
        if (stats.size > metadataMaxBytes) {
          throw new UpstreamError(where, `${stats.size} bytes, over the metadata limit of ${metadataMaxBytes} bytes (limits.metadataMaxBytes)`, 200)
        }
        const bytes = await readCapped(handle, where, metadataMaxBytes)
        return { status: 200, text: bytes.toString('utf8'), etag }
      } finally {
        await handle.close()
      }
    },
    async openFile(relPath, { offset = 0 } = {}): Promise<FileResponse> {
      const { handle, stats, where } = await openChecked(relPath)
      if (offset > 0 && offset >= stats.size) {
        await handle.close()
        throw new UpstreamError(where, `is ${stats.size} bytes, cannot be read from byte ${offset}`, 416)
      }
      const body = handle.createReadStream({ start: offset, autoClose: true })
      const headers =
        offset > 0
          ? { 'content-length': String(stats.size - offset), 'content-range': `bytes ${offset}-${stats.size - 1}/${stats.size}` }
          : { 'content-length': String(stats.size) }
      return { url: where, status: offset > 0 ? 206 : 200, headers, body }
    },
    pathProblem,
    describe,
  }
}

/** A root without an index is most often an empty mount point: say so. */
function withTreeHint(relPath: string, error: Error): Error {
  if (relPath !== INDEX_PATH || !(error instanceof UpstreamError) || error.status !== 404) return error
  return new UpstreamError(error.url, 'no such file on disk: no SimpleStreams tree here (is the disk mounted?)', 404)
}

function isUnder(root: string, path: string): boolean {
  const inside = relative(root, path)
  return inside !== '' && !inside.startsWith(`..${sep}`) && inside !== '..' && !isAbsolute(inside)
}

/** Changes with any rewrite, copy or replacement of the file: size, modification time (to the microsecond), inode. */
function validatorOf(stats: Stats): string {
  return `"${stats.size.toString(16)}-${Math.round(stats.mtimeMs * 1000).toString(16)}-${stats.ino.toString(16)}"`
}

/** The whole file, failing as soon as it passes `cap` (it may grow while being read). */
async function readCapped(handle: FileHandle, where: string, cap: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let received = 0
  for (;;) {
    const chunk = Buffer.allocUnsafe(64 * 1024)
    const { bytesRead } = await handle.read(chunk, 0, chunk.length, received).catch((error: Error) => Promise.reject(diskError(where, error)))
    if (bytesRead === 0) return Buffer.concat(chunks, received)
    received += bytesRead
    if (received > cap) throw new UpstreamError(where, `read cut after ${received} bytes, over the metadata limit of ${cap} bytes (limits.metadataMaxBytes)`, 200)
    chunks.push(chunk.subarray(0, bytesRead))
  }
}

/** A file-system error as the upstream error with the HTTP status that means the same. */
function diskError(where: string, error: Error): UpstreamError {
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'ENOENT' || code === 'ENOTDIR') return new UpstreamError(where, 'no such file on disk', 404)
  if (code === 'EACCES' || code === 'EPERM') return new UpstreamError(where, 'permission denied', 403)
  if (code === 'ELOOP') return new UpstreamError(where, 'too many levels of symbolic links; refused', 403)
  return new UpstreamError(where, code !== undefined ? `${code} (${error.message})` : error.message)
}
