/**
 * The certificate and key of `listen.tls`, read and checked together: PEM,
 * parseable, and a key that belongs to the certificate. Read when the
 * configuration is loaded and again on every reload, so that a renewed
 * certificate is picked up; a bad file is a `ConfigError` naming the key.
 */

import { X509Certificate, createPrivateKey } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { ListenConfig } from './types.js'
import { ConfigError } from './validate-config.js'

export interface TlsFiles {
  cert: Buffer
  key: Buffer
}

export async function readTlsFiles(tls: NonNullable<ListenConfig['tls']>, source: string): Promise<TlsFiles> {
  const fail = (name: 'cert' | 'key', problem: string): never => {
    throw new ConfigError(source, `listen.tls.${name}`, problem)
  }
  const read = async (name: 'cert' | 'key'): Promise<Buffer> => {
    const path = tls[name]
    const content = await readFile(path).catch((error: NodeJS.ErrnoException) => fail(name, `cannot read ${path}: ${error.code ?? error.message}`))
    if (!content.includes('-----BEGIN ')) fail(name, `${path} is not a PEM file (no "-----BEGIN" line)`)
    return content
  }
  const [cert, key] = [await read('cert'), await read('key')]
  let certificate: X509Certificate
  try {
    certificate = new X509Certificate(cert)
  } catch (error) {
    return fail('cert', `${tls.cert} holds no readable certificate: ${(error as Error).message}`)
  }
  try {
    if (!certificate.checkPrivateKey(createPrivateKey(key))) fail('key', `${tls.key} is not the key of the certificate in ${tls.cert}`)
  } catch (error) {
    if (error instanceof ConfigError) throw error
    fail('key', `${tls.key} holds no readable private key: ${(error as Error).message}`)
  }
  return { cert, key }
}
