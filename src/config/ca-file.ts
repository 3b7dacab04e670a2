/**
 * The PEM file of a `ca` key (a company CA, a TLS-inspecting proxy's CA):
 * read and checked when the configuration is loaded and again whenever the
 * mirrors are built (start and every reload, so a replaced file is picked
 * up). A file that cannot be read or holds no readable certificate is a
 * `ConfigError` naming the key.
 */

import { X509Certificate } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { ConfigError } from './validate-config.js'

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g

/** The certificates of `path`, one PEM block each. */
export async function readCaFile(path: string, key: string, source: string): Promise<string[]> {
  const fail = (problem: string): never => {
    throw new ConfigError(source, key, problem)
  }
  const text = await readFile(path, 'latin1').catch((error: NodeJS.ErrnoException) => fail(`cannot read ${path}: ${error.code ?? error.message}`))
  const blocks = text.match(CERTIFICATE_BLOCK) ?? []
  if (blocks.length === 0) fail(`${path} is not a PEM file of certificates (no "-----BEGIN CERTIFICATE-----" block)`)
  blocks.forEach((block, index) => {
    try {
      new X509Certificate(block)
    } catch (error) {
      fail(`${path}: certificate ${index + 1} cannot be read: ${(error as Error).message}`)
    }
  })
  return blocks
}
