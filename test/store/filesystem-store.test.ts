import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createFilesystemStore } from '../../src/store/filesystem-store.js'
import { listTempFiles } from '../support/temp-files.js'
import { storeContract } from './store-contract.js'

storeContract('the filesystem store', {
  largeBytes: 12 * 1024 * 1024,
  async open() {
    const dataDir = await mkdtemp(join(tmpdir(), 'sstream-fs-store-'))
    const store = createFilesystemStore({ dataDir, owner: 'test' })
    await store.check()
    return { store, leftovers: async () => (await listTempFiles(dataDir)).length }
  },
})
