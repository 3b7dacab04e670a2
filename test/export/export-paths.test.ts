import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { entryAt, exportPathProblem, ExportError, prepareParents } from '../../src/export/export-paths.js'

test('paths from metadata must be plain relative paths and not the export\'s own files', () => {
  assert.equal(exportPathProblem('noble/amd64/20250201/squashfs'), undefined)
  assert.equal(exportPathProblem('../etc/passwd'), 'has a ".." segment')
  assert.equal(exportPathProblem('/etc/passwd'), 'absolute')
  assert.equal(exportPathProblem('.sstream-proxy-export.json'), "is reserved for the export's own files")
  assert.equal(exportPathProblem('.sstream-proxy-export.tmp/x'), "is reserved for the export's own files")
})

test('entryAt and prepareParents never go through a symlink', async () => {
  const root = await mkdtemp(join(tmpdir(), 'export-paths-'))
  try {
    const outside = join(root, 'outside')
    const dir = join(root, 'dir')
    await mkdir(outside)
    await mkdir(dir)
    await writeFile(join(outside, 'file'), 'x')
    await symlink(outside, join(dir, 'link'))
    assert.equal(await entryAt(dir, 'missing/file'), undefined)
    await assert.rejects(entryAt(dir, 'link/file'), (error) => error instanceof ExportError && /link is a symlink/.test(error.message))
    await assert.rejects(prepareParents(dir, 'link/sub/file'), (error) => error instanceof ExportError && /link is a symlink/.test(error.message))
    assert.deepEqual(await readdir(outside), ['file'])
    assert.equal((await entryAt(dir, 'link'))?.isSymbolicLink(), true, 'the last segment itself is reported, not followed')
    assert.equal(await prepareParents(dir, 'a/b/file'), join(dir, 'a/b/file'))
    assert.equal((await entryAt(dir, 'a/b'))?.isDirectory(), true)
  } finally {
    await rm(root, { recursive: true, force: true })
  }
})
