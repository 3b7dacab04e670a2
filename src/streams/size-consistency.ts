/**
 * One sha256 is one file of one size. Signed metadata that lists a sha256 at
 * two sizes, in two items or against the file the store holds, contradicts
 * itself: at most one size can be right, and serving an item by the other
 * would end a response with bytes that fail its sha256. These checks find
 * such items and name them fully, so an operator can report them upstream.
 * Pure functions of their inputs: they run wherever a publication is built.
 */

import type { FileRef, SelectedFile } from './selection.js'

/** Signed metadata that contradicts itself or the store about a file's size. */
export class InconsistentMetadataError extends Error {
  override name = 'InconsistentMetadataError'
}

/** The first item naming `file`, with its path and size, as messages name it. */
export function describeItem(file: SelectedFile): string {
  const ref = file.refs[0] as FileRef
  const more = file.refs.length > 1 ? ` and ${file.refs.length - 1} more item(s)` : ''
  const name = `products[${JSON.stringify(ref.product)}].versions[${JSON.stringify(ref.version)}].items[${JSON.stringify(ref.item)}]`
  return `${ref.contentId} ${name}${more} (path ${JSON.stringify(file.path)}, ${file.size} bytes)`
}

/** Throws naming both items when two files list one sha256 at different sizes. */
export function checkSizesAgree(files: Iterable<SelectedFile>): void {
  const bySha256 = new Map<string, SelectedFile>()
  for (const file of files) {
    const known = bySha256.get(file.sha256)
    if (known === undefined) bySha256.set(file.sha256, file)
    else if (known.size !== file.size) {
      throw new InconsistentMetadataError(
        `inconsistent signed metadata: sha256 ${file.sha256} is listed at ${known.size} bytes by ${describeItem(known)} and at ${file.size} bytes by ${describeItem(file)}`,
      )
    }
  }
}

/**
 * The message for an item whose sha256 the store holds, or is fetching, at
 * another size; undefined when the sizes agree.
 */
export function sizeConflict(file: SelectedFile, other: { size: number; state: 'stored' | 'being fetched' }): string | undefined {
  if (other.size === file.size) return undefined
  return `inconsistent signed metadata: ${describeItem(file)} lists sha256 ${file.sha256} at ${file.size} bytes, but the ${other.state === 'stored' ? 'stored file' : 'file being fetched for another item'} with that sha256 has ${other.size} bytes`
}

/** Throws for the first file whose sha256 is stored at another size (`storedSize` undefined: not stored). */
export function checkStoredSizes(files: Iterable<SelectedFile>, storedSize: (sha256: string) => number | undefined): void {
  for (const file of files) {
    const size = storedSize(file.sha256)
    const conflict = size === undefined ? undefined : sizeConflict(file, { size, state: 'stored' })
    if (conflict !== undefined) throw new InconsistentMetadataError(conflict)
  }
}
