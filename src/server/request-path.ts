/**
 * Turns the path of a request into a mirror and a path inside it, refusing
 * anything that could reach outside: `..` and `.` segments, backslashes, NUL,
 * and their percent-encoded forms (`%2e%2e`, `%2f`, `%5c`, `%00`). The check
 * runs on the raw request target, before any normalisation could hide it.
 */

import { unsafePathReason } from '../streams/item-path.js'

export type ResolvedPath<M> =
  | { kind: 'mirror'; mirror: M; path: string }
  | { kind: 'outside' }
  | { kind: 'unsafe'; reason: string }

// Encoded forms of characters that separate or climb path segments. Any of
// them in a request is an attempt to smuggle a segment past a check.
const ENCODED_SEPARATORS = /%(2e|2f|5c|00|25)/i

/** Decodes and checks the raw request path (without query), then finds the mirror whose `path` prefixes it. */
export function resolveRequestPath<M extends { config: { path: string } }>(rawPath: string, mirrors: readonly M[]): ResolvedPath<M> {
  if (ENCODED_SEPARATORS.test(rawPath)) return { kind: 'unsafe', reason: 'encoded ".", "/", "\\", "%" or NUL in the path' }
  let path: string
  try {
    path = decodeURIComponent(rawPath)
  } catch {
    return { kind: 'unsafe', reason: 'malformed percent-encoding in the path' }
  }
  if (path.includes('\\') || path.includes('\0')) return { kind: 'unsafe', reason: 'backslash or NUL in the path' }
  if (/(^|\/)\.\.?(\/|$)/.test(path)) return { kind: 'unsafe', reason: '"." or ".." segment in the path' }
  const mirror = mirrors.find((candidate) => path.startsWith(candidate.config.path))
  if (mirror === undefined) return { kind: 'outside' }
  const inside = path.slice(mirror.config.path.length)
  const reason = unsafePathReason(inside)
  if (reason !== undefined) return inside === '' ? { kind: 'outside' } : { kind: 'unsafe', reason }
  return { kind: 'mirror', mirror, path: inside }
}

/** The path part of a request target, exactly as the client sent it. */
export function rawRequestPath(target: string): string {
  const start = target.startsWith('/') ? 0 : target.indexOf('/', target.indexOf('//') + 2)
  const path = start < 0 ? '/' : target.slice(start)
  const query = path.search(/[?#]/)
  return query < 0 ? path : path.slice(0, query)
}
