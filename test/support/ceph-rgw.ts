/**
 * A real Ceph RADOS Gateway for the S3 store's tests, started with
 * `scripts/ceph-rgw.sh` under a fresh temp folder (about 3 s) and stopped by
 * `down()`. One per test file: the fault tests stop and start its gateway, so
 * files never share one. Buckets are made with the admin user's S3 keys.
 */

import { execFile } from 'node:child_process'
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { CreateBucketCommand, PutBucketAclCommand, S3Client } from '@aws-sdk/client-s3'

const run = promisify(execFile)
// The tests' own SDK clients: the pinned release's warning about later releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
const SCRIPT = new URL('../../scripts/ceph-rgw.sh', import.meta.url).pathname

export interface S3Keys {
  accessKeyId: string
  secretAccessKey: string
}

export interface CephRgw {
  /** `http://127.0.0.1:PORT` */
  endpoint: string
  keys: S3Keys
  /** Milliseconds `up` took. */
  startMs: number
  /** An SDK client with the settings RGW needs, for the tests' own checks. */
  client(keys?: S3Keys): S3Client
  createBucket(name: string, acl?: 'private' | 'authenticated-read'): Promise<void>
  /** Another S3 user (not the bucket's owner). */
  createUser(uid: string): Promise<S3Keys>
  /** Stops only the gateway: the S3 endpoint refuses connections, the objects stay. */
  stopGateway(): Promise<void>
  startGateway(): Promise<void>
  down(): Promise<void>
}

const parseKeys = (text: string): S3Keys => ({
  accessKeyId: /^S3_ACCESS_KEY=(.*)$/m.exec(text)?.[1] ?? '',
  secretAccessKey: /^S3_SECRET_KEY=(.*)$/m.exec(text)?.[1] ?? '',
})

export interface CephRgwOptions {
  /** What the OSD keeps in RAM at most (memstore); default 1 GiB. */
  storeBytes?: number
}

export async function startCephRgw(options: CephRgwOptions = {}): Promise<CephRgw> {
  const dir = await mkdtemp(join(tmpdir(), 'sstream-rgw-'))
  const env = { ...process.env, CEPH_RGW_STORE_BYTES: String(options.storeBytes ?? 1024 * 1024 * 1024) }
  const started = performance.now()
  await run(SCRIPT, ['up', dir], { env })
  const startMs = Math.round(performance.now() - started)
  const text = await readFile(join(dir, 's3.env'), 'utf8')
  const endpoint = /^S3_ENDPOINT=(.*)$/m.exec(text)?.[1] ?? ''
  const keys = parseKeys(text)
  const clients: S3Client[] = []
  const client = (as: S3Keys = keys) => {
    const made = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: as,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    })
    clients.push(made)
    return made
  }
  return {
    endpoint,
    keys,
    startMs,
    client,
    async createBucket(name, acl = 'private') {
      const admin = client()
      await admin.send(new CreateBucketCommand({ Bucket: name }))
      if (acl !== 'private') await admin.send(new PutBucketAclCommand({ Bucket: name, ACL: acl }))
    },
    async createUser(uid) {
      const { stdout } = await run(SCRIPT, ['user', dir, uid], { env })
      return parseKeys(stdout)
    },
    async stopGateway() {
      await run(SCRIPT, ['gateway-stop', dir], { env })
    },
    async startGateway() {
      await run(SCRIPT, ['gateway-start', dir], { env })
    },
    async down() {
      for (const made of clients) made.destroy()
      await run(SCRIPT, ['down', dir], { env })
    },
  }
}
