import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile, open } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli } from '../../src/cli/run-cli.js'
import type { Plan } from '../../src/prefetch/plan.js'
import { DEFAULT_SELECTIONS, MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { buildUpstreamTree } from '../support/upstream-tree.js'

let h: Harness
let configPath: string

before(async () => {
  h = await startHarness()
  await h.stopProxy()
  configPath = join(h.dataDir, 'config.json')
  await writeFile(
    configPath,
    JSON.stringify({
      dataDir: h.dataDir,
      signingKey: h.config.signingKey,
      mirrors: [{ name: 'stable', path: MIRROR_PATH, upstream: h.upstream.url, keyring: h.keyringPath, selections: DEFAULT_SELECTIONS }],
    }),
  )
})
after(() => h.close())

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await runCli([...args, '--config', configPath], {
    cwd: h.dataDir,
    env: {},
    stdout: { write: (chunk) => (stdout += String(chunk)) },
    stderr: { write: (chunk) => (stderr += String(chunk)) },
  })
  return { code, stdout, stderr }
}

const itemRequests = () =>
  [...h.upstream.tree.files.keys()].filter((path) => !path.startsWith('streams/')).reduce((sum, path) => sum + h.upstream.requestCount(path), 0)

describe('prefetch', () => {
  test('--dry-run prints the plan per product and version and fetches no item', async () => {
    h.upstream.resetCounters()
    const text = await cli(['prefetch', '--dry-run'])
    assert.equal(text.code, 0, text.stderr)
    assert.match(text.stdout, /^fetch stable com\.ubuntu\.maas\.stable:v3:boot:24\.04:amd64:ga-24\.04 20250201: 4 of 4 files, 76\.5 KiB$/m)
    assert.match(text.stdout, /^total: fetch 10 files \(96\.5 KiB\), keep 0 files \(0 B\), drop 0 files \(0 B\)$/m)
    const json = await cli(['prefetch', '--dry-run', '--json'])
    const plan = JSON.parse(json.stdout) as Plan & { maasProblems: Record<string, string[]> }
    assert.equal(plan.versions.filter((entry) => entry.action === 'fetch').length, 5)
    assert.deepEqual(plan.maasProblems, { stable: [] }, 'MAAS 3.8 accepts what the mirror serves')
    assert.doesNotMatch(text.stderr, /warning/)
    assert.equal(plan.totals.fetchFiles, 10)
    assert.equal(itemRequests(), 0)
  })

  test('warms the selection, prints one line per mirror, and exits 0', async () => {
    const result = await cli(['prefetch'])
    assert.equal(result.code, 0, result.stderr)
    assert.equal(result.stdout, 'stable: ok, 10/10 files, 96.5 KiB\nremoved 0 unreferenced files (0 B)\n')
    assert.match(result.stderr, /^stable: 100% 10\/10 files, 96\.5 KiB\/96\.5 KiB/m, 'a plain progress line off a terminal')
    assert.equal(itemRequests(), 10)
  })

  test('exits non-zero and names the file when one fails; the dry run shows the drop, gc makes it', async () => {
    const tree = await buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', '20250301'] })
    h.upstream.setTree(tree)
    const plan = await cli(['prefetch', '--dry-run'])
    assert.match(plan.stdout, /^drop  stable com\.ubuntu\.maas\.stable:v3:boot:24\.04:amd64:ga-24\.04 20250201: 4 files, 76\.5 KiB$/m)
    assert.match(plan.stdout, /^total: fetch 10 files \(96\.5 KiB\), keep 0 files \(0 B\), drop 10 files \(96\.5 KiB\)$/m)
    h.upstream.setFault('noble/amd64/20250301/squashfs', { kind: 'status', status: 404 })
    const result = await cli(['prefetch', '--json'])
    h.upstream.setFault('noble/amd64/20250301/squashfs', undefined)
    assert.equal(result.code, 1)
    const report = JSON.parse(result.stdout) as { passes: Array<{ result: string; counts: { errors: string[] } }>; garbage: unknown }
    assert.equal(report.passes[0]?.result, 'failed')
    assert.match(report.passes[0]?.counts.errors[0] as string, /noble\/amd64\/20250301\/squashfs: .*HTTP 404/)
    assert.equal(report.garbage, null, 'no collection after a failed pass')
    const drop = await cli(['gc', '--dry-run'])
    assert.match(drop.stdout, /^would remove 10 files, /m)
    assert.match((await cli(['gc'])).stdout, /^removed noble\/amd64\/20250201\/squashfs \(64\.0 KiB, sha256 [0-9a-f]{64}\)$/m)
    assert.match((await cli(['gc', '--dry-run'])).stdout, /^would remove 0 files, 0 B$/m)
  })
})

describe('verify', () => {
  test('verify finds a file altered on disk, and --repair removes it and its row so it is fetched again', async () => {
    assert.equal((await cli(['prefetch'])).code, 0)
    const clean = await cli(['verify'])
    assert.equal(clean.code, 0, clean.stdout)
    assert.match(clean.stdout, /^checked 10 files, .*: 0 mismatches$/m)

    const item = h.upstream.tree.items.find((entry) => entry.path === 'noble/amd64/20250301/squashfs')
    const handle = await open(join(h.dataDir, 'blobs', item!.sha256.slice(0, 2), item!.sha256), 'r+')
    await handle.write(Buffer.from([0x00, 0xff]), 0, 2, 1000)
    await handle.close()

    const found = await cli(['verify'])
    assert.equal(found.code, 1)
    assert.match(found.stdout, /^MISMATCH noble\/amd64\/20250301\/squashfs \(sha256 [0-9a-f]{64}\): sha256 [0-9a-f]{64} does not match/m)
    const repaired = await cli(['verify', '--repair'])
    assert.equal(repaired.code, 0)
    assert.match(repaired.stdout, /: 1 mismatches, removed$/m)
    assert.match((await cli(['verify'])).stdout, /^checked 9 files, .*: 0 mismatches$/m)
    const dry = await cli(['prefetch', '--dry-run'])
    assert.match(dry.stdout, /^fetch stable com\.ubuntu\.maas\.stable:v3:boot:24\.04:amd64:ga-24\.04 20250301: 1 of 4 files, 64\.0 KiB$/m)
  })
})
