/**
 * The one rule for paths below a mirror root, used for item and index paths in
 * upstream metadata and for the paths clients request: a relative path of plain
 * segments that can neither leave the root nor mean two things.
 */

// C0 and C1 control characters (NUL included) and DEL.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/
// `%` is refused so that an encoded `..` can never survive one decoding and be
// decoded again later; `?` and `#` would change meaning once joined to the
// upstream URL. Real streams use none of them.
const FORBIDDEN = /[\\%?#]/

/** Why a path is unsafe, in a few words, or undefined when it is safe. */
export function unsafePathReason(path: string): string | undefined {
  if (path === '') return 'empty'
  if (CONTROL.test(path)) return 'contains a control character'
  if (path.startsWith('/')) return 'absolute'
  // `http:host/x` is a URL with a scheme, not a relative path: joined to the
  // upstream root it would name another host (RFC 3986 4.2 forbids a colon in
  // a relative path's first segment for this reason).
  const first = path.slice(0, path.indexOf('/') === -1 ? undefined : path.indexOf('/'))
  if (first.includes(':')) return 'has a ":" in its first segment (a URL scheme)'
  const forbidden = FORBIDDEN.exec(path)
  if (forbidden !== null) return `contains "${forbidden[0]}"`
  for (const segment of path.split('/')) {
    if (segment === '') return 'has an empty segment'
    if (segment === '.' || segment === '..') return `has a "${segment}" segment`
  }
  return undefined
}

/** True when the path is a relative path of plain segments (see `unsafePathReason`). */
export function isSafeItemPath(path: string): boolean {
  return unsafePathReason(path) === undefined
}
