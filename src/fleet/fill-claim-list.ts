/**
 * The fills running fleet-wide, read from their claim records
 * (`fills/<sha256>`, written by the replica that fills the file): what
 * garbage collection must leave alone and what `/status` lists. Only the
 * reading is here; claiming is the fill's business. A claim past its expiry
 * belongs to a replica that stopped renewing it (dead), and is not counted.
 */

import type { RecordStore } from '../store/s3-records.js'
import type { FillClaim } from './fill-claims.js'

const SHA256_HEX = /^[0-9a-f]{64}$/

/** The live claims by sha256. A claim removed between the listing and its read is simply gone. */
export async function listLiveClaims(records: RecordStore, at: number): Promise<Map<string, FillClaim>> {
  const names: string[] = []
  for await (const name of records.list('fills/')) names.push(name)
  const claims = new Map<string, FillClaim>()
  await Promise.all(
    names.map(async (name) => {
      const sha256 = name.slice('fills/'.length)
      if (!SHA256_HEX.test(sha256)) return
      const claim = (await records.read<FillClaim>(name))?.value
      if (claim !== undefined && claim.expiresAt > at) claims.set(sha256, claim)
    }),
  )
  return claims
}
