/**
 * What a prefetch pass would do, per product and version: fetch the selected
 * versions with files missing, keep the complete ones, drop the stored files
 * nothing references any more. The dry run prints it; the pass fetches
 * `filesToFetch`.
 */

import type { Publication } from '../mirror/publication.js'
import type { FillTarget } from '../store/fill.js'
import type { StoredFile } from '../store/file-index.js'

export type PlanAction = 'fetch' | 'keep' | 'drop'

export interface VersionPlan {
  mirror: string
  product: string
  version: string
  action: PlanAction
  /** Files of the version (fetch, keep) or stored files of it to remove (drop). */
  files: number
  bytes: number
  /** Files to fetch (fetch only). */
  missingFiles: number
  missingBytes: number
}

export interface PlanTotals {
  fetchFiles: number
  fetchBytes: number
  keepFiles: number
  keepBytes: number
  dropFiles: number
  dropBytes: number
}

export interface Plan {
  versions: VersionPlan[]
  /** Distinct files (by sha256): a shared file counts once. */
  totals: PlanTotals
}

export type IsStored = (sha256: string) => boolean

/** The selected files not stored, one per sha256, in path order. */
export function filesToFetch(publication: Publication, isStored: IsStored): FillTarget[] {
  const targets = new Map<string, FillTarget>()
  // Sorted by path already.
  for (const file of publication.selectedFiles()) {
    if (!isStored(file.sha256) && !targets.has(file.sha256)) targets.set(file.sha256, file)
  }
  return [...targets.values()]
}

export function buildPlan(mirrors: ReadonlyArray<{ name: string; publication: Publication }>, isStored: IsStored, garbage: readonly StoredFile[]): Plan {
  const versions: VersionPlan[] = []
  const fetch = new Map<string, number>()
  const keep = new Map<string, number>()
  for (const { name, publication } of mirrors) {
    for (const { product, version, files } of publication.versions()) {
      const missing = files.filter((file) => !isStored(file.sha256))
      for (const file of files) (isStored(file.sha256) ? keep : fetch).set(file.sha256, file.size)
      versions.push({
        mirror: name,
        product,
        version,
        action: missing.length > 0 ? 'fetch' : 'keep',
        files: files.length,
        bytes: sum(files),
        missingFiles: missing.length,
        missingBytes: sum(missing),
      })
    }
  }
  versions.push(...dropPlan(mirrors, garbage))
  const size = (map: Map<string, number>) => [...map.values()].reduce((a, b) => a + b, 0)
  return {
    versions,
    totals: {
      fetchFiles: fetch.size,
      fetchBytes: size(fetch),
      keepFiles: keep.size,
      keepBytes: size(keep),
      dropFiles: garbage.length,
      dropBytes: sum(garbage),
    },
  }
}

/** Names each file to drop by the upstream items that list it; a file upstream no longer lists goes by its path. */
function dropPlan(mirrors: ReadonlyArray<{ name: string; publication: Publication }>, garbage: readonly StoredFile[]): VersionPlan[] {
  const drops = new Map<string, VersionPlan>()
  for (const file of garbage) {
    const owners = new Map<string, { mirror: string; product: string; version: string }>()
    for (const { name, publication } of mirrors) {
      for (const ref of publication.upstreamOwners(file.sha256)) {
        owners.set(JSON.stringify([name, ref.product, ref.version]), { mirror: name, product: ref.product, version: ref.version })
      }
    }
    if (owners.size === 0) owners.set(file.path, { mirror: '', product: '(not in upstream metadata)', version: file.path })
    for (const [key, owner] of owners) {
      const plan = drops.get(key) ?? { ...owner, action: 'drop', files: 0, bytes: 0, missingFiles: 0, missingBytes: 0 }
      plan.files++
      plan.bytes += file.size
      drops.set(key, plan)
    }
  }
  return [...drops.values()]
}

function sum(files: ReadonlyArray<{ size: number }>): number {
  return files.reduce((total, file) => total + file.size, 0)
}
