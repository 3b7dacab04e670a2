/**
 * `serve` as an operator runs it, in a child process: `kill -HUP` re-reads
 * the configuration file. A changed selection is served without a restart
 * (same process, same port); a file with a mistake is refused with one log
 * line naming the key, and the server goes on with the configuration it had.
 */

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MIRROR_PATH } from '../support/proxy-harness.js'
import { rawRequest } from '../support/http.js'
import { buildUpstreamTree } from '../support/upstream-tree.js'
import { startUpstreamServer } from '../support/upstream-server.js'
import { startChildProxy, writeProxyConfig, type ChildProxy } from '../reliability/support/child-proxy.js'

/** Sends SIGHUP and resolves with the first log line (parsed) whose message is one of `messages`. */
function hangup(proxy: ChildProxy, messages: string[]): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    let pending = ''
    const look = (chunk: Buffer | string) => {
      pending += String(chunk)
      const lines = pending.split('\n')
      pending = lines.pop() ?? ''
      for (const line of lines) {
        const entry = JSON.parse(line) as Record<string, unknown>
        if (messages.includes(String(entry.message))) {
          proxy.process.stdout?.off('data', look)
          resolve(entry)
        }
      }
    }
    proxy.process.stdout?.on('data', look)
    proxy.process.kill('SIGHUP')
  })
}

async function productNames(proxy: ChildProxy): Promise<string[]> {
  const response = await rawRequest(proxy.url, `${MIRROR_PATH}streams/v1/index.json`)
  assert.equal(response.status, 200)
  const index = JSON.parse(response.body.toString()) as { index: Record<string, { products: string[] }> }
  return Object.values(index.index).flatMap((entry) => entry.products)
}

test('kill -HUP puts a changed selection in force, and refuses a broken file keeping the running one', { timeout: 60_000 }, async () => {
  const tree = await buildUpstreamTree()
  const upstream = await startUpstreamServer(tree)
  const dir = await mkdtemp(join(tmpdir(), 'sstream-hup-'))
  let proxy: ChildProxy | undefined
  try {
    const options = { dir, dataDir: join(dir, 'data'), upstream: upstream.url, keyring: await tree.writeKeyring(dir) }
    const configPath = await writeProxyConfig({ ...options, selections: [{ filters: ['release=jammy', 'arch=amd64'], max: 1 }] })
    proxy = await startChildProxy(configPath)
    const before = await productNames(proxy)
    assert.ok(before.length > 0 && before.every((name) => name.includes(':22.04:')), before.join(', '))

    await writeProxyConfig({ ...options, selections: [{ filters: ['release=noble', 'arch=amd64'], max: 1 }] })
    const reloaded = await hangup(proxy, ['configuration reloaded', 'configuration refused, the running one stays in force'])
    assert.equal(reloaded.message, 'configuration reloaded', JSON.stringify(reloaded))
    const after = await productNames(proxy)
    assert.ok(after.length > 0 && after.every((name) => name.includes(':24.04:')), after.join(', '))

    await writeFile(configPath, JSON.stringify({ mirrors: [{ name: 'stable', path: MIRROR_PATH, upstream: upstream.url, keyring: options.keyring }], listen: { port: 'eighty' } }))
    const refused = await hangup(proxy, ['configuration reloaded', 'configuration refused, the running one stays in force'])
    assert.equal(refused.message, 'configuration refused, the running one stays in force')
    assert.match(String(refused.error), /config\.json: listen\.port: expected an integer from 0 to 65535, got "eighty"$/)
    assert.deepEqual(await productNames(proxy), after, 'the running configuration stays')

    const exit = await proxy.stop()
    assert.equal(exit.code, 0, exit.stderr)
    assert.equal(exit.stderr, '')
    proxy = undefined
  } finally {
    await proxy?.stop('SIGKILL')
    await upstream.close()
    await rm(dir, { recursive: true, force: true })
  }
})
