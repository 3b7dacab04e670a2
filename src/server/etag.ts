/** Conditional requests: whether an If-None-Match header names a representation. */

/**
 * True when `header` (one If-None-Match value, or several joined with ", ")
 * is `*` or lists `etag`, compared weakly as RFC 9110 asks for If-None-Match.
 */
export function matchesEtag(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  return header.trim() === '*' || header.split(',').some((candidate) => candidate.trim().replace(/^W\//, '') === etag)
}
