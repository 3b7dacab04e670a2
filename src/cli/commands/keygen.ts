/**
 * `sstream-proxy keygen [--force]`: creates the proxy's signing key at the
 * configured `signingKey`, the key that signs the metadata MAAS is served.
 */

import { mkdir, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateSigningKey, saveSigningKey } from '../../streams/signing-key.js'
import { PROGRAM, type Command } from '../command.js'

export const keygenCommand: Command = {
  name: 'keygen',
  summary: "create the proxy's signing key at signingKey (serve creates it when missing)",
  usage: 'keygen [--force]',
  options: {
    force: { type: 'boolean', description: 'replace an existing key (MAAS must then be given the new public key)' },
  },
  async run(args, context) {
    const config = await context.loadConfig()
    const path = config.signingKey
    const force = args.values.force === true
    // Checked before generating so the common refusal is instant and says how to
    // override; saveSigningKey still refuses atomically if another process wins a race.
    if (!force && (await exists(path))) {
      context.stderr.write(`${PROGRAM} keygen: ${path} already exists (use --force to replace it)\n`)
      return 1
    }
    await mkdir(dirname(path), { recursive: true, mode: 0o700 })
    const key = await generateSigningKey()
    await saveSigningKey(path, key, { force })
    context.stdout.write(`created signing key ${key.fingerprint} at ${path}\n`)
    context.stdout.write(`give MAAS its public key: ${PROGRAM} key > sstream-proxy-keyring.gpg\n`)
    return 0
  },
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}
