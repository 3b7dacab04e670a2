/**
 * `sstream-proxy demo` as a newcomer runs it: a real process that prints
 * where to look, serves signed metadata and verified files, and stops
 * cleanly on Ctrl-C.
 */

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { checkMaasCompatibility, describeMaasProblem } from '../../src/streams/maas-compatibility.js'
import { readKeyring, verifyClearsigned } from '../../src/streams/signature.js'
import type { IndexDocument, ProductsDocument } from '../../src/streams/types.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

test('demo prints its URLs and MAAS commands, serves signed metadata MAAS 3.8 accepts and files, and exits 0 on SIGINT', { timeout: 60_000 }, async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'demo', '--port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  try {
    const started = Date.now()
    while (!/Ctrl-C stops the demo/.test(stdout)) {
      if (child.exitCode !== null) assert.fail(`demo exited early (${child.exitCode}): ${stderr}`)
      if (Date.now() - started > 45_000) assert.fail(`demo printed no instructions: ${stdout} ${stderr}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const mirror = /^ {2}proxy +(http:\/\/\S+)$/m.exec(stdout)?.[1]
    assert.ok(mirror, `proxy URL printed:\n${stdout}`)
    const base = new URL('/', mirror).href
    const dataDir = /^ {2}data +(\S+) {2}\(removed on exit\)$/m.exec(stdout)?.[1]
    assert.ok(dataDir !== undefined && existsSync(dataDir), 'a temporary data directory is printed')
    assert.match(stdout, new RegExp(`maas \\$PROFILE boot-source update 1 url=${mirror.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} keyring_filename= keyring_data@=/tmp/sstream-proxy.gpg`))
    assert.match(stdout, /curl -s http:\/\/\S+\/streams\/v1\/index\.sjson/)

    // The metadata is signed with the proxy's key, which the proxy hands out.
    const keys = await readKeyring(new Uint8Array(await (await fetch(`${base}keyring.gpg`)).arrayBuffer()), 'keyring.gpg')
    const index = await fetch(`${mirror}streams/v1/index.sjson`)
    assert.equal(index.status, 200)
    const indexDoc = JSON.parse(await verifyClearsigned(await index.text(), keys)) as IndexDocument
    // What MAAS reads: the signed index, then every products file it lists; its models must accept all of them.
    const documents = new Map<string, ProductsDocument>()
    for (const [contentId, entry] of Object.entries(indexDoc.index)) {
      documents.set(contentId, JSON.parse(await verifyClearsigned(await (await fetch(`${mirror}${entry.path}`)).text(), keys)) as ProductsDocument)
    }
    assert.deepEqual([...documents.keys()].sort(), ['com.ubuntu.maas:stable:1:bootloader-download', 'com.ubuntu.maas:stable:v3:download'])
    assert.deepEqual(checkMaasCompatibility({ index: indexDoc, products: documents }).map(describeMaasProblem), [])
    const status = (await (await fetch(`${base}status`)).json()) as { mirrors: Array<{ maasProblems: string[] }> }
    assert.deepEqual(status.mirrors[0]?.maasProblems, [])
    const products = documents.get('com.ubuntu.maas:stable:v3:download') as ProductsDocument

    // An item from the published metadata, whole and with the checksum it names.
    const [version] = Object.values(Object.values(products.products)[0]?.versions ?? {})
    const kernel = version?.items['boot-kernel']
    assert.ok(kernel?.path !== undefined && kernel.sha256 !== undefined)
    const file = await fetch(`${mirror}${kernel.path}`)
    assert.equal(file.status, 200)
    const bytes = Buffer.from(await file.arrayBuffer())
    assert.equal(bytes.length, kernel.size)
    assert.equal(createHash('sha256').update(bytes).digest('hex'), kernel.sha256)

    child.kill('SIGINT')
    const [code] = await exited
    assert.equal(code, 0, stderr)
    assert.equal(existsSync(dataDir), false, 'the temporary data directory is removed')
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL')
  }
})
