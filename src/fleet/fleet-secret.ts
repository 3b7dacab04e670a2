/**
 * The fleet's shared secret (`fleet.secretFile`): read when the configuration
 * is loaded, so that a missing or short secret stops the start with a line
 * naming the key, not the first request between replicas. Replicas prove they
 * know it with a MAC of the request, never by sending it.
 */

import { createHmac, timingSafeEqual } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { ConfigError } from '../config/validate-config.js'

const MIN_SECRET_CHARS = 16

export async function readFleetSecret(path: string, source: string): Promise<string> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new ConfigError(source, 'fleet.secretFile', `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
  }
  const secret = text.trim()
  if (secret.length < MIN_SECRET_CHARS) {
    throw new ConfigError(source, 'fleet.secretFile', `${path} holds ${secret.length} characters; the secret needs at least ${MIN_SECRET_CHARS} (e.g. openssl rand -hex 32 > ${path})`)
  }
  return secret
}

/** The MAC a replica sends for `subject` (a request's method and path, and its timestamp). */
export function fleetMac(secret: string, subject: string): string {
  return createHmac('sha256', secret).update(subject).digest('hex')
}

/** Compares in constant time, so that the MAC cannot be guessed byte by byte. */
export function fleetMacMatches(secret: string, subject: string, mac: string): boolean {
  const expected = Buffer.from(fleetMac(secret, subject), 'hex')
  const given = Buffer.from(mac, 'hex')
  return given.length === expected.length && timingSafeEqual(given, expected)
}
