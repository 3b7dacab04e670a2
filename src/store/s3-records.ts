/**
 * Small JSON records next to the objects in the bucket (`<prefix>fleet/…`),
 * written with S3's conditional writes: `If-None-Match: *` creates a record
 * only when it is not there, `If-Match: <etag>` replaces it only when nobody
 * has changed it since it was read. That is all a fleet needs to agree
 * without a coordinator of its own: a fill claim or a lease is a record one
 * replica wins, renews by replacing, and another takes over by replacing it
 * once it has expired. (RGW honours both headers on PutObject, measured in
 * ../shared/reference/ceph-rgw.md; under 16 racing creates exactly one wins.)
 * Record names never look like a sha256, so listings of cached objects skip them.
 */

import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3ServiceException, type S3Client } from '@aws-sdk/client-s3'

export interface StoredRecord<T> {
  value: T
  /** Names this version of the record for `replace`. */
  etag: string
}

export interface RecordStore {
  /** Creates `name` unless it exists: the new record's etag, or undefined when it was there already. */
  create(name: string, value: unknown): Promise<string | undefined>
  read<T>(name: string): Promise<StoredRecord<T> | undefined>
  /** Replaces `name` if it is still the version `etag`: the new etag, or undefined when it changed or went. */
  replace(name: string, value: unknown, etag: string): Promise<string | undefined>
  /** Removing a record that is not there is not an error. */
  remove(name: string): Promise<void>
  /** Names of the records under `prefix` (a name prefix, e.g. `fills/`). */
  list(prefix: string): AsyncIterable<string>
}

export interface S3RecordsOptions {
  client: S3Client
  bucket: string
  /** Key prefix of every record, ending with `/`. */
  keyPrefix: string
  /** The store's request wrapper: counts failures and keeps its health. */
  send<T>(what: string, request: () => Promise<T>): Promise<T>
}

// Segments of safe characters, none of them `.` or `..`.
const RECORD_NAME = /^(?!\.\.?(\/|$))[A-Za-z0-9._-]+(\/(?!\.\.?(\/|$))[A-Za-z0-9._-]+)*$/

export function createS3Records(options: S3RecordsOptions): RecordStore {
  const { client, bucket, keyPrefix, send } = options
  const keyOf = (name: string) => {
    if (!RECORD_NAME.test(name)) throw new Error(`record name ${JSON.stringify(name)} is not a plain relative name`)
    return `${keyPrefix}${name}`
  }
  const put = async (name: string, value: unknown, condition: { IfNoneMatch: '*' } | { IfMatch: string }) => {
    const key = keyOf(name)
    const body = Buffer.from(JSON.stringify(value))
    try {
      const answer = await send(`writing ${key}`, () =>
        client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length, ContentType: 'application/json', ...condition })),
      )
      return answer.ETag ?? ''
    } catch (error) {
      if (lostTheRace(error)) return undefined
      throw error
    }
  }
  return {
    create: (name, value) => put(name, value, { IfNoneMatch: '*' }),
    // RGW compares If-Match with the bare etag: the quoted form it answers never matches.
    replace: (name, value, etag) => put(name, value, { IfMatch: etag.replace(/^"|"$/g, '') }),
    async read<T>(name: string) {
      const key = keyOf(name)
      try {
        const answer = await send(`reading ${key}`, () => client.send(new GetObjectCommand({ Bucket: bucket, Key: key })))
        const text = (await answer.Body?.transformToString('utf8')) ?? ''
        return { value: JSON.parse(text) as T, etag: answer.ETag ?? '' }
      } catch (error) {
        if (notThere(error)) return undefined
        throw error
      }
    },
    async remove(name) {
      const key = keyOf(name)
      await send(`deleting ${key}`, () => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })))
    },
    async *list(prefix) {
      let token: string | undefined
      do {
        const page = await send(`listing ${keyPrefix}${prefix}`, () =>
          client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${keyPrefix}${prefix}`, ContinuationToken: token })),
        )
        for (const object of page.Contents ?? []) if (object.Key !== undefined) yield object.Key.slice(keyPrefix.length)
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined
      } while (token !== undefined)
    },
  }
}

function statusOf(error: unknown): number | undefined {
  const cause = (error as { cause?: unknown }).cause ?? error
  return cause instanceof S3ServiceException ? cause.$metadata.httpStatusCode : (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode
}

/** 412: the condition failed (the record exists, or changed); 404 or 409 on a replace of a record since removed or being written. */
function lostTheRace(error: unknown): boolean {
  const code = (error as { code?: string; name?: string }).code ?? (error as { name?: string }).name
  return code === 'PreconditionFailed' || code === 'ConditionalRequestConflict' || code === 'NoSuchKey' || statusOf(error) === 412 || statusOf(error) === 409
}

function notThere(error: unknown): boolean {
  const code = (error as { code?: string; name?: string }).code ?? (error as { name?: string }).name
  return code === 'NoSuchKey' || code === 'NotFound' || statusOf(error) === 404
}
