/**
 * A mirror's upstream as a source of relative paths: the mirror asks for
 * `streams/v1/index.sjson` or an item path, and only the source decides where
 * that comes from (one HTTP base URL today; a failover list or a `file://`
 * directory are other implementations of the same interface). Everything
 * transport-specific lives below it, credentials and their redaction
 * included, and every path is checked here to stay under the source's root.
 */

import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'

/** Validators of the copy held, for a conditional request. */
export interface DocumentValidators {
  etag?: string
  lastModified?: string
}

export type DocumentResult =
  | { status: 200; text: string; etag?: string; lastModified?: string }
  | { status: 304 }

/** An item file's response, from `offset` on. */
export interface FileResponse {
  /** Where it came from, for messages (credentials redacted). */
  url: string
  status: number
  headers: IncomingHttpHeaders
  /** The body; destroy it when abandoning the transfer so the connection is freed. */
  body: Readable
}

export interface OpenFileOptions {
  /** First byte wanted; from 0 when omitted. */
  offset?: number
}

export interface UpstreamSource {
  /** A metadata document (conditional when validators are given), retried on transient failure. */
  getDocument(relPath: string, validators?: DocumentValidators): Promise<DocumentResult>
  /** An item file, for a fill; from `offset` on when it is given. */
  openFile(relPath: string, options?: OpenFileOptions): Promise<FileResponse>
  /** Why this source refuses `relPath` (it would leave the root), or undefined when it serves it. */
  pathProblem(relPath: string): string | undefined
  /** The root (or, with `relPath`, that path under it) for `/status`, messages and the log: never a credential. */
  describe(relPath?: string): string
  /**
   * Runs `task` against one member that serves everything it asks for (a
   * source of several upstreams: a failing member is put in cool-down and the
   * task runs again, whole, on the next), so that documents that must agree
   * (an index and its products files) come from one upstream. Without it the
   * source itself is the one member.
   */
  withOneMember?<T>(task: (member: UpstreamSource) => Promise<T>): Promise<T>
  /** Each upstream behind this source with its state, for `/status`; without it the source is one upstream, described by `describe()`. */
  health?(): UpstreamHealth[]
}

/** One upstream of a mirror as `/status` shows it. */
export interface UpstreamHealth {
  /** `describe()` of the upstream: credentials redacted. */
  url: string
  /** `cooling` while skipped after a failure, until `coolingUntil`. */
  state: 'ok' | 'cooling'
  /** ISO time the cool-down ends, null when not cooling. */
  coolingUntil: string | null
  /** The last failure of this upstream, kept after it recovers; null when none. */
  lastError: string | null
  /** ISO time of `lastError`. */
  lastErrorAt: string | null
}

/**
 * A path that would leave the source's root. Never retried: the path comes
 * from signed metadata, so only a change upstream can fix it.
 */
export class UpstreamPathError extends Error {
  override name = 'UpstreamPathError'
}
