/**
 * A certificate authority made by the test with the `openssl` command (Node
 * cannot issue X.509 certificates): a CA certificate clients can trust, and
 * server certificates it signs for 127.0.0.1 and localhost.
 */

import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface TestCa {
  /** Path of the CA certificate (PEM), for `ca` options and `curl --cacert`. */
  certPath: string
  /**
   * Issues a server certificate for 127.0.0.1 and localhost (or `altNames`,
   * as `subjectAltName` entries like `DNS:other.example`), expired already
   * with `expired`; returns the PEM files' paths.
   */
  issue(name: string, options?: { altNames?: string[]; expired?: boolean }): Promise<{ cert: string; key: string }>
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

export async function createTestCa(dir: string): Promise<TestCa> {
  const certPath = join(dir, 'ca.crt')
  const keyPath = join(dir, 'ca.key')
  await run('openssl', ['req', '-x509', ...EC_KEY, '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=sstream-proxy test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  const extensions = join(dir, 'server.ext')
  await writeFile(extensions, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  return {
    certPath,
    async issue(name, { altNames, expired = false } = {}) {
      const key = join(dir, `${name}.key`)
      const request = join(dir, `${name}.csr`)
      const cert = join(dir, `${name}.crt`)
      let extfile = extensions
      if (altNames !== undefined) {
        extfile = join(dir, `${name}.ext`)
        await writeFile(extfile, `subjectAltName=${altNames.join(',')}\nextendedKeyUsage=serverAuth\n`)
      }
      await run('openssl', ['req', ...EC_KEY, '-keyout', key, '-out', request, '-subj', `/CN=${name}`])
      // -days -1 puts the end of validity a day before its start: expired from the first moment.
      await run('openssl', ['x509', '-req', '-in', request, '-CA', certPath, '-CAkey', keyPath, '-set_serial', `0x${randomBytes(8).toString('hex')}`,
        '-days', expired ? '-1' : '2', '-extfile', extfile, '-out', cert])
      return { cert, key }
    },
  }
}
