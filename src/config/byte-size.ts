/**
 * Sizes in the configuration: a number of bytes, or a number with a unit,
 * `512KiB`, `64MiB`, `1GiB` (powers of 1024) or `64MB` (powers of 1000).
 */

import { describeValue } from './duration.js'

export class ByteSizeSyntaxError extends Error {
  override name = 'ByteSizeSyntaxError'
}

/** Bytes in one of each size unit; rates (rate.ts) build on these. */
export const UNIT_BYTES: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
}

const BYTE_SIZE_SYNTAX = /^([0-9]+)\s*(B|KB|MB|GB|KiB|MiB|GiB)$/

/** Returns the size in bytes, or throws `ByteSizeSyntaxError` with a message fit for an operator. */
export function parseByteSize(value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value
  if (typeof value === 'string') {
    const match = BYTE_SIZE_SYNTAX.exec(value)
    if (match !== null) {
      const bytes = Number(match[1]) * (UNIT_BYTES[match[2] as string] as number)
      if (Number.isSafeInteger(bytes) && bytes > 0) return bytes
    }
  }
  throw new ByteSizeSyntaxError(`${describeValue(value)} is not a size (use a number of bytes or a number with KiB, MiB, GiB, KB, MB or GB, e.g. "64MiB")`)
}
