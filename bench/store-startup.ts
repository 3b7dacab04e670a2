/**
 * Start-up time of the store with many stored files: `openStore` reconciles
 * the SQLite index with the files on disk before the first request.
 * Usage: node --import tsx bench/store-startup.ts [FILES]   (default 30000)
 */

import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { openStore } from '../src/store/store.js'

const count = Number(process.argv[2] ?? 30_000)
const dataDir = await mkdtemp(join(tmpdir(), 'sstream-proxy-bench-startup-'))
try {
  const seed = await openStore({ dataDir })
  const insert = seed.db.transaction((rows: Array<{ sha256: string; size: number; path: string }>) => {
    for (const row of rows) seed.index.put(row)
  })
  const rows = []
  for (let n = 0; n < count; n++) {
    const sha256 = createHash('sha256').update(String(n)).digest('hex')
    rows.push({ sha256, size: 1, path: `release/arch/${n}/file` })
  }
  for (const row of rows) {
    await mkdir(join(dataDir, 'blobs', row.sha256.slice(0, 2)), { recursive: true })
    await writeFile((seed.objects.localPath as (sha256: string) => string)(row.sha256), 'x')
  }
  insert(rows)
  await seed.close()

  const started = performance.now()
  const store = await openStore({ dataDir })
  const ms = performance.now() - started
  console.log(JSON.stringify({ files: store.startup.files, startupMs: Math.round(ms) }))
  await store.close()
} finally {
  await rm(dataDir, { recursive: true, force: true })
}
