/**
 * Re-hashes every stored file: its bytes must hash to the sha256 it is stored
 * under (which is what the signed metadata names) and its size must match the
 * index and the metadata. A file that does not is reported, and with
 * `repair` removed with its row, so the next request or pass fetches it again.
 */

import { createHash } from 'node:crypto'
import { readChunks } from '../store/object-bytes.js'
import type { ObjectStore } from '../store/object-store.js'
import type { Publication } from '../mirror/publication.js'
import type { StoredFile } from '../store/file-index.js'
import type { Store } from '../store/store.js'

export interface VerifyProblem {
  sha256: string
  path: string
  problem: string
}

export interface VerifyReport {
  checked: number
  bytes: number
  problems: VerifyProblem[]
  /** True when the problem files were removed. */
  repaired: boolean
}

export interface VerifyOptions {
  repair?: boolean
  /** Called after each file, for progress. */
  onFile?: (file: StoredFile, problem: string | undefined) => void
}

export async function verifyStore(store: Store, publications: ReadonlyArray<Publication | undefined>, options: VerifyOptions = {}): Promise<VerifyReport> {
  const expected = new Map<string, { size: number; path: string }>()
  for (const publication of publications) {
    for (const file of publication?.files.values() ?? []) expected.set(file.sha256, { size: file.size, path: file.path })
  }
  const report: VerifyReport = { checked: 0, bytes: 0, problems: [], repaired: options.repair === true }
  for (const file of store.index.all()) {
    const known = expected.get(file.sha256)
    const problem = await check(store.objects, file, known?.size)
    report.checked++
    report.bytes += file.size
    if (problem !== undefined) {
      report.problems.push({ sha256: file.sha256, path: known?.path ?? file.path, problem })
      if (options.repair === true) {
        store.index.delete(file.sha256)
        await store.objects.remove(file.sha256)
      }
    }
    options.onFile?.(file, problem)
  }
  return report
}

async function check(objects: ObjectStore, file: StoredFile, metadataSize: number | undefined): Promise<string | undefined> {
  const hash = createHash('sha256')
  let size = 0
  try {
    // The whole object as stored, whatever the index says its size is.
    const storedSize = await objects.head(file.sha256)
    const reader = storedSize === undefined ? undefined : await objects.openRange(file.sha256, 0, storedSize - 1)
    if (storedSize === undefined || reader === undefined) return 'missing from the store'
    for await (const chunk of readChunks(reader, 0, storedSize - 1)) {
      size += chunk.length
      hash.update(chunk)
    }
  } catch (error) {
    return `unreadable: ${(error as Error).message}`
  }
  if (metadataSize !== undefined && size !== metadataSize) return `size ${size} differs from the signed metadata (${metadataSize})`
  if (size !== file.size) return `size ${size} differs from the index (${file.size})`
  const digest = hash.digest('hex')
  if (digest !== file.sha256) return `sha256 ${digest} does not match its name and the metadata`
  return undefined
}
