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
  /** Issues a server certificate for 127.0.0.1 and localhost; returns the PEM files' paths. */
  issue(name: string): Promise<{ cert: string; key: string }>
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
    async issue(name) {
      const key = join(dir, `${name}.key`)
      const request = join(dir, `${name}.csr`)
      const cert = join(dir, `${name}.crt`)
      await run('openssl', ['req', ...EC_KEY, '-keyout', key, '-out', request, '-subj', `/CN=${name}`])
      await run('openssl', ['x509', '-req', '-in', request, '-CA', certPath, '-CAkey', keyPath, '-set_serial', `0x${randomBytes(8).toString('hex')}`,
        '-days', '2', '-extfile', extensions, '-out', cert])
      return { cert, key }
    },
  }
}
