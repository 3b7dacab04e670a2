/**
 * `sstream-proxy key [--armor]`: writes the proxy's public key to stdout, the
 * keyring MAAS is given (binary by default, as `gpgv --keyring` reads it).
 */

import { loadOrCreateSigningKey } from '../../streams/signing-key.js'
import { PROGRAM, UsageError, type Command } from '../command.js'

export const keyCommand: Command = {
  name: 'key',
  summary: "write the proxy's public key to stdout: the keyring MAAS is given",
  usage: 'key [--armor]',
  options: {
    armor: { type: 'boolean', short: 'a', description: 'ASCII-armored instead of binary' },
  },
  async run(args, context) {
    const armor = args.values.armor === true
    if (!armor && context.stdout.isTTY === true) {
      throw new UsageError('key: refusing to write a binary key to a terminal (redirect it to a file, or use --armor)')
    }
    const config = await context.loadConfig()
    // The same key serve would create, so the keyring can be handed to MAAS before the first start.
    const { key, created } = await loadOrCreateSigningKey(config.signingKey)
    if (created) {
      context.stderr.write(`${PROGRAM} key: created signing key ${key.fingerprint} at ${config.signingKey}\n`)
    }
    context.stdout.write(armor ? key.publicArmored : key.publicBinary)
    return 0
  },
}
