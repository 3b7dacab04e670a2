/**
 * The cache in an S3 bucket (Ceph RADOS Gateway, or any S3 API): objects
 * keyed `<prefix><sha256>`. A fill spools to local disk (readers following
 * the fill read the spool) and uploads the spool in parts as it grows; the
 * multipart upload is completed only after size and sha256 are verified and
 * aborted otherwise, so nothing unverified is ever visible in the bucket.
 * A file no larger than one part goes up in a single PutObject at commit,
 * with `If-None-Match: *` (RGW ignores that header on CompleteMultipartUpload;
 * an overwrite there puts back the same verified bytes, so it is harmless).
 * A writer for an object another replica may store meanwhile (a fleet's
 * follower) only spools, and uploads at commit only when the object is absent.
 * Uploads left by a crash are aborted once older than `abandonedUploadAgeMs`,
 * at start-up and by `maintain`. Hits stream a GET with `Range`.
 */

import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3'
import { createSpool, removeStaleSpools } from './spool.js'
import { createS3Records } from './s3-records.js'
import { createStreamReader } from './stream-reader.js'
import {
  StoreAccessError,
  StoreUnavailableError,
  type ObjectStore,
  type ObjectWriter,
  type RangeReader,
  type StoreHealth,
  type StoredObject,
  type WriterOptions,
  type StoreRequestObserver,
  type StoreRequestOutcome,
} from './object-store.js'

const SHA256_HEX = /^[0-9a-f]{64}$/

export interface S3StoreOptions {
  endpoint: string
  bucket: string
  /** Prepended to every key; a `/` is added when missing. */
  prefix: string
  region: string
  forcePathStyle: boolean
  credentials: { accessKeyId: string; secretAccessKey: string }
  /** Where fills spool (`<dataDir>/tmp/<owner>/`). */
  dataDir: string
  owner: string
  /** Multipart part size; default 16 MiB (S3's minimum is 5 MiB). */
  partBytes?: number
  /** Multipart uploads older than this that no running fill owns are aborted. */
  abandonedUploadAgeMs: number
  /** How long to wait for a connection to the store. */
  connectTimeoutMs?: number
  /** Hears of every request sent to the store, for /metrics. */
  observeRequest?: StoreRequestObserver
}

const QUIET_LOGGER = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined }
const PART_BYTES = 16 * 1024 * 1024
/** Written then aborted at start-up: proves write permission and leaves nothing visible. */
const WRITE_CHECK_KEY = '.sstream-proxy-write-check'

export function createS3Store(options: S3StoreOptions): ObjectStore {
  const { bucket } = options
  const prefix = options.prefix === '' || options.prefix.endsWith('/') ? options.prefix : `${options.prefix}/`
  const partBytes = options.partBytes ?? PART_BYTES
  const tempParent = join(options.dataDir, 'tmp')
  const spoolDir = join(tempParent, options.owner)
  const keyOf = (sha256: string) => `${prefix}${sha256}`
  // The SDK warns on every start under Node 20 that releases after January 2027
  // will need Node 22: the release is pinned (package.json) for that reason, and
  // the warning would otherwise be every start-up's first line on stderr.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  const client = new S3Client({
    endpoint: options.endpoint,
    region: options.region,
    forcePathStyle: options.forcePathStyle,
    credentials: options.credentials,
    // RGW does not know the SDK's default trailing checksums on streamed bodies (411).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 2,
    // Failures are reported by the store (health, log); the SDK's own console warnings are not wanted.
    logger: QUIET_LOGGER,
    requestHandler: {
      connectionTimeout: options.connectTimeoutMs ?? 3_000,
      requestTimeout: 30_000,
      // A hit holds its connection for the whole body. With the SDK's default of
      // 50 sockets the 51st concurrent hit waited for a socket, and after the
      // connection timeout failed as if the store were down; how many hits run
      // at once is the clients' number, bounded where they are served.
      httpAgent: { keepAlive: true, maxSockets: Infinity },
    },
  })
  if (options.observeRequest !== undefined) observeRequests(client, options.observeRequest)
  /** Upload ids of this process's running fills: never abandoned, whatever their age. */
  const ownUploads = new Set<string>()

  const health: StoreHealth = { state: 'unknown', lastError: null, since: null, errors: 0 }
  const setState = (state: StoreHealth['state']) => {
    if (health.state === state) return
    health.state = state
    health.since = new Date().toISOString()
  }

  /** Sends a request, noting what the store answered; errors come back as StoreUnavailableError unless the store itself answered. */
  async function send<T>(what: string, request: () => Promise<T>): Promise<T> {
    try {
      const result = await request()
      setState('ok')
      return result
    } catch (error) {
      const message = `${what}: ${describeS3Error(error)}`
      const answered = error instanceof S3ServiceException && (error.$metadata.httpStatusCode ?? 500) < 500
      // A 404 for an object, or a 412 for a conditional write that lost, is an
      // answer like any other; anything else counts as the store failing.
      if (answered && (isNotFound(error) || isPreconditionFailed(error))) {
        setState('ok')
        throw error
      }
      health.errors++
      health.lastError = message
      setState('unavailable')
      if (answered) throw Object.assign(new StoreUnavailableError(message), { code: (error as S3ServiceException).name })
      throw new StoreUnavailableError(message)
    }
  }

  async function* list(): AsyncIterable<StoredObject> {
    let token: string | undefined
    do {
      const page = await send(`listing s3://${bucket}/${prefix}`, () =>
        client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token })),
      )
      for (const object of page.Contents ?? []) {
        const name = object.Key?.slice(prefix.length) ?? ''
        if (SHA256_HEX.test(name) && object.Key === keyOf(name)) yield { sha256: name, size: object.Size ?? 0 }
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (token !== undefined)
  }

  async function head(sha256: string): Promise<number | undefined> {
    try {
      const answer = await send(`HEAD ${keyOf(sha256)}`, () => client.send(new HeadObjectCommand({ Bucket: bucket, Key: keyOf(sha256) })))
      return answer.ContentLength ?? 0
    } catch (error) {
      if (isNotFound(error)) return undefined
      throw error
    }
  }

  async function abort(key: string, uploadId: string): Promise<void> {
    await send(`aborting the upload of ${key}`, () => client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId })))
  }

  async function createWriter(target: StoredObject, writerOptions: WriterOptions = {}): Promise<ObjectWriter> {
    const { storedElsewhere = false } = writerOptions
    const key = keyOf(target.sha256)
    const spool = await createSpool(spoolDir, target)
    let uploadId: string | undefined
    const parts: CompletedPart[] = []
    /** Bytes of the spool given to parts, uploaded or queued. */
    let queued = 0
    let uploading = Promise.resolve()
    let failure: Error | undefined
    let ended = false

    const uploadPart = async (from: number, length: number) => {
      if (uploadId === undefined) {
        const created = await send(`starting the upload of ${key}`, () => client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key })))
        uploadId = created.UploadId as string
        ownUploads.add(uploadId)
      }
      const id = uploadId
      const partNumber = parts.length + 1
      const answer = await send(`uploading part ${partNumber} of ${key}`, () =>
        client.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId: id,
            PartNumber: partNumber,
            ContentLength: length,
            Body: createReadStream(spool.path, { start: from, end: from + length - 1, highWaterMark: 1024 * 1024 }),
          }),
        ),
      )
      parts.push({ PartNumber: partNumber, ETag: answer.ETag })
    }
    // Parts go up one at a time, in order, while the fill goes on writing the spool.
    const queue = (length: number) => {
      const from = queued
      queued += length
      uploading = uploading.then(() => (failure === undefined ? uploadPart(from, length) : undefined)).catch((error: Error) => {
        failure ??= error
      })
    }

    return {
      get written() {
        return spool.written
      },
      async write(chunks, bytes) {
        if (failure !== undefined) throw failure
        await spool.write(chunks, bytes)
        // The last part may be of any size; it is queued at commit, after verification.
        if (!storedElsewhere) while (spool.written - queued > partBytes) queue(partBytes)
      },
      openWritten: () => (ended ? Promise.reject(Object.assign(new Error(`${spool.path}: fill ended`), { code: 'ENOENT' })) : open(spool.path, 'r')),
      verify: () => spool.verify(),
      async commit() {
        spool.verify()
        if (storedElsewhere && (await head(target.sha256)) === target.size) {
          // The replica that owned the fill stored the same verified bytes: nothing to upload.
        } else if (spool.written <= partBytes) {
          await putWhole(key, spool.path, target.size)
        } else {
          while (spool.written - queued > partBytes) queue(partBytes)
          queue(spool.written - queued)
          await uploading
          if (failure !== undefined) throw failure
          const id = uploadId as string
          await send(`completing the upload of ${key}`, () =>
            client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: id, MultipartUpload: { Parts: parts } })),
          )
          ownUploads.delete(id)
        }
        ended = true
        await spool.remove()
      },
      async discard() {
        ended = true
        failure ??= new Error('discarded')
        await uploading
        await spool.remove()
        if (uploadId === undefined) return
        // When the store is down this fails; the upload is then aborted once abandoned.
        await abort(key, uploadId).catch(() => undefined)
        ownUploads.delete(uploadId)
      },
    }
  }

  async function putWhole(key: string, path: string, size: number): Promise<void> {
    try {
      await send(`storing ${key}`, () =>
        client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            ContentLength: size,
            Body: size === 0 ? Buffer.alloc(0) : createReadStream(path, { highWaterMark: 1024 * 1024 }),
            // Another proxy stored the same verified bytes first: that is as good.
            IfNoneMatch: '*',
          }),
        ),
      )
    } catch (error) {
      if (!isPreconditionFailed(error)) throw error
    }
  }

  async function abortAbandoned(): Promise<number> {
    const cutoff = Date.now() - options.abandonedUploadAgeMs
    let aborted = 0
    let keyMarker: string | undefined
    let uploadIdMarker: string | undefined
    do {
      const page = await send(`listing the uploads under s3://${bucket}/${prefix}`, () =>
        client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker })),
      )
      for (const upload of page.Uploads ?? []) {
        if (upload.Key === undefined || upload.UploadId === undefined || ownUploads.has(upload.UploadId)) continue
        if ((upload.Initiated?.getTime() ?? 0) > cutoff) continue
        await abort(upload.Key, upload.UploadId)
        aborted++
      }
      const more = page.IsTruncated === true
      keyMarker = more ? page.NextKeyMarker : undefined
      uploadIdMarker = more ? page.NextUploadIdMarker : undefined
    } while (keyMarker !== undefined)
    return aborted
  }

  return {
    type: 's3',
    location: `s3://${bucket}/${prefix} at ${options.endpoint}`,
    async check() {
      try {
        await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, MaxKeys: 1 }))
        const key = `${prefix}${WRITE_CHECK_KEY}`
        const created = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }))
        await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: created.UploadId }))
        setState('ok')
      } catch (error) {
        const refusal = accessProblem(error, bucket, options.endpoint)
        if (refusal !== undefined) throw refusal
        // Unreachable or failing: noted, and the proxy starts without it.
        return void (await send(`checking s3://${bucket}/${prefix}`, () => Promise.reject(error)))
      }
    },
    async openRange(sha256, start, end) {
      if (end < start) return (await head(sha256)) === undefined ? undefined : emptyReader()
      try {
        const answer = await send(`GET ${keyOf(sha256)}`, () =>
          client.send(new GetObjectCommand({ Bucket: bucket, Key: keyOf(sha256), Range: `bytes=${start}-${end}` })),
        )
        return createStreamReader(answer.Body as Readable, start)
      } catch (error) {
        if (isNotFound(error)) return undefined
        throw error
      }
    },
    head,
    createWriter,
    async remove(sha256) {
      await send(`deleting ${keyOf(sha256)}`, () => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: keyOf(sha256) })))
    },
    list,
    async recover({ isLive }) {
      const removedTemp = await removeStaleSpools(tempParent, isLive)
      // Objects reach the bucket only verified: they are trusted without a re-hash.
      const objects: StoredObject[] = []
      for await (const object of list()) objects.push(object)
      return { removedTemp, discardedFiles: 0, objects }
    },
    async maintain() {
      return { abortedUploads: await abortAbandoned() }
    },
    health: () => ({ ...health }),
    records: createS3Records({ client, bucket, keyPrefix: `${prefix}fleet/`, send }),
    close: () => client.destroy(),
  }
}

/**
 * Times every request the client sends, in the SDK's middleware rather than
 * in `send()`: the start-up check's requests, and any added later, are
 * counted too. The SDK's own retry of a request is within one observation.
 */
function observeRequests(client: S3Client, observe: StoreRequestObserver): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const operation = (context.commandName ?? 'unknown').replace(/Command$/, '')
      const started = performance.now()
      const seconds = () => (performance.now() - started) / 1000
      try {
        const result = await next(args)
        observe(operation, 'ok', seconds())
        return result
      } catch (error) {
        observe(operation, requestOutcome(error), seconds())
        throw error
      }
    },
    { step: 'initialize', name: 'sstreamProxyRequestMetrics' },
  )
}

function requestOutcome(error: unknown): StoreRequestOutcome {
  if (isNotFound(error)) return 'not_found'
  const status = error instanceof S3ServiceException ? (error.$metadata.httpStatusCode ?? 500) : 500
  return status < 500 ? 'refused' : 'error'
}

function emptyReader(): RangeReader {
  return { read: async () => ({ bytesRead: 0 }), close: async () => undefined }
}

function isPreconditionFailed(error: unknown): boolean {
  return error instanceof S3ServiceException && (error.name === 'PreconditionFailed' || error.$metadata.httpStatusCode === 412)
}

function isNotFound(error: unknown): boolean {
  if (!(error instanceof S3ServiceException)) return false
  return error.name === 'NoSuchKey' || error.name === 'NotFound' || (error.$metadata.httpStatusCode === 404 && error.name !== 'NoSuchBucket')
}

/** `Code (HTTP status): message` as the store answered, or the network error. */
export function describeS3Error(error: unknown): string {
  if (error instanceof S3ServiceException) {
    const status = error.$metadata.httpStatusCode
    const detail = error.message !== '' && error.message !== error.name && error.message !== 'UnknownError' ? `: ${error.message}` : ''
    return `${error.name}${status === undefined ? '' : ` (HTTP ${status})`}${detail}`
  }
  const code = (error as NodeJS.ErrnoException).code
  const message = (error as Error).message ?? String(error)
  return code !== undefined && !message.includes(code) ? `${code} (${message})` : message
}

/** What the operator must fix, when the store's answer says so; undefined for a store that is down. */
function accessProblem(error: unknown, bucket: string, endpoint: string): StoreAccessError | undefined {
  if (!(error instanceof S3ServiceException)) return undefined
  const status = error.$metadata.httpStatusCode ?? 500
  if (status >= 500) return undefined
  const answer = describeS3Error(error)
  switch (error.name) {
    case 'InvalidAccessKeyId':
    case 'SignatureDoesNotMatch':
      return new StoreAccessError('AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY', `the S3 store at ${endpoint} refused the credentials: ${answer}`)
    case 'NoSuchBucket':
      return new StoreAccessError('store.bucket', `bucket "${bucket}" does not exist at ${endpoint}: ${answer}`)
    case 'AccessDenied':
      return new StoreAccessError('store.bucket', `bucket "${bucket}" at ${endpoint} refused to list or to start an upload (the proxy needs to list, read, write and delete): ${answer}`)
    default:
      return new StoreAccessError('store', `the S3 store at ${endpoint} refused bucket "${bucket}": ${answer}`)
  }
}
