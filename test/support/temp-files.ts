/** The temp files under `dataDir/tmp/` (every process's folder), as paths relative to it. */

import { readdir } from 'node:fs/promises'
import { join } from 'node:path'

export async function listTempFiles(dataDir: string): Promise<string[]> {
  const entries = await readdir(join(dataDir, 'tmp'), { recursive: true, withFileTypes: true }).catch(() => [])
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath ?? entry.path, entry.name).slice(join(dataDir, 'tmp').length + 1))
}
