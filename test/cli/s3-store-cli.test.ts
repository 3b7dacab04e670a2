/**
 * `serve` with an S3 store the operator got wrong, against a real Ceph RGW:
 * wrong credentials, a missing bucket, a bucket the user may read but not
 * write, no credentials at all. Each is one line on stderr naming the key and
 * what the store answered, and exit status 2, before anything listens.
 */
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startCephRgw, type CephRgw, type S3Keys } from '../support/ceph-rgw.js'

const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))
const tsx = import.meta.resolve('tsx')

let rgw: CephRgw
let cwd: string
let reader: S3Keys

before(async () => {
  cwd = await mkdtemp(join(tmpdir(), 'sstream-s3-cli-'))
  rgw = await startCephRgw()
  await rgw.createBucket('owned')
  // Readable by every authenticated user, writable only by its owner.
  await rgw.createBucket('read-only', 'authenticated-read')
  reader = await rgw.createUser('reader')
})
after(async () => {
  await rgw?.down()
  await rm(cwd, { recursive: true, force: true })
})

/** Runs `serve` with `store` and `keys` in the environment; stopped with SIGTERM if it gets as far as listening. */
async function serve(bucket: string, keys: Partial<S3Keys>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const config = join(cwd, `config-${bucket}.json`)
  await writeFile(
    config,
    JSON.stringify({
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(cwd, `data-${bucket}`),
      store: { type: 's3', endpoint: rgw.endpoint, bucket },
      prefetch: { onStart: false },
      mirrors: [{ name: 'stable', path: '/stable/', upstream: 'http://127.0.0.1:9/stable/' }],
    }),
  )
  const env: NodeJS.ProcessEnv = { ...process.env }
  delete env.SSTREAM_PROXY_CONFIG
  delete env.AWS_ACCESS_KEY_ID
  delete env.AWS_SECRET_ACCESS_KEY
  if (keys.accessKeyId !== undefined) env.AWS_ACCESS_KEY_ID = keys.accessKeyId
  if (keys.secretAccessKey !== undefined) env.AWS_SECRET_ACCESS_KEY = keys.secretAccessKey
  const child = spawn(process.execPath, ['--import', tsx, cli, 'serve', '--config', config], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  let stdout = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8')
    if (stdout.includes('listening')) child.kill('SIGTERM')
  })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  return { code, stdout, stderr }
}

describe('serve with an S3 store it cannot use', () => {
  test('a good bucket and keys: the proxy starts', async () => {
    const { code, stdout, stderr } = await serve('owned', rgw.keys)
    assert.notEqual(code, 2, stderr)
    assert.match(stdout, /store opened.*s3:\/\/owned\//)
    assert.match(stdout, /listening/)
  })

  test('wrong credentials: one line naming the variables and the store\'s answer, exit 2', async () => {
    const { code, stderr } = await serve('owned', { accessKeyId: 'NOSUCHKEY0000000000', secretAccessKey: 'wrong' })
    assert.equal(code, 2)
    assert.equal(stderr.trim().split('\n').length, 1, stderr)
    assert.match(stderr, /AWS_ACCESS_KEY_ID\/AWS_SECRET_ACCESS_KEY: .*refused the credentials: InvalidAccessKeyId \(HTTP 403\)/)
  })

  test('a wrong secret: the same, with the store\'s answer', async () => {
    const { code, stderr } = await serve('owned', { ...rgw.keys, secretAccessKey: 'not-the-secret' })
    assert.equal(code, 2)
    assert.equal(stderr.trim().split('\n').length, 1, stderr)
    assert.match(stderr, /AWS_ACCESS_KEY_ID\/AWS_SECRET_ACCESS_KEY: .*SignatureDoesNotMatch \(HTTP 403\)/)
  })

  test('a missing bucket: one line naming store.bucket and NoSuchBucket, exit 2', async () => {
    const { code, stderr } = await serve('no-such-bucket', rgw.keys)
    assert.equal(code, 2)
    assert.equal(stderr.trim().split('\n').length, 1, stderr)
    assert.match(stderr, /store\.bucket: bucket "no-such-bucket" does not exist at http:\/\/127\.0\.0\.1:\d+: NoSuchBucket \(HTTP 404\)/)
  })

  test('a bucket the user may read but not write: one line naming store.bucket and AccessDenied, exit 2', async () => {
    const { code, stderr } = await serve('read-only', reader)
    assert.equal(code, 2)
    assert.equal(stderr.trim().split('\n').length, 1, stderr)
    assert.match(stderr, /store\.bucket: bucket "read-only" .*AccessDenied \(HTTP 403\)/)
  })

  test('no credentials in the environment: one line naming the variables, exit 2', async () => {
    const { code, stderr } = await serve('owned', {})
    assert.equal(code, 2)
    assert.match(stderr, /^sstream-proxy: .*AWS_ACCESS_KEY_ID\/AWS_SECRET_ACCESS_KEY: the S3 store needs both set in the environment\n$/)
  })
})
