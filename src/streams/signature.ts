/**
 * OpenPGP for SimpleStreams metadata: read the keyrings operators hand us,
 * check upstream's `.sjson` files, and clearsign the documents the proxy
 * rewrites so that MAAS (`gpgv --keyring=K`) accepts them.
 *
 * The text convention is gpg's: in a clearsigned document the line break just
 * before `-----BEGIN PGP SIGNATURE-----` belongs to the armor, not to the
 * signed text, and `gpgv -o -` prints the signed text followed by one newline.
 * So `clearsign` takes text ending with a newline, and `verifyClearsigned`
 * returns the signed text plus that newline: `verify(clearsign(x)) === x`.
 */
import * as openpgp from 'openpgp'

export class KeyringError extends Error {
  override name = 'KeyringError'
}

export type SignatureFailure = 'unsigned' | 'bad-signature' | 'unknown-key'

export class SignatureError extends Error {
  override name = 'SignatureError'
  constructor(
    readonly reason: SignatureFailure,
    message: string,
  ) {
    super(message)
  }
}

const SIGNED_MESSAGE_HEADER = '-----BEGIN PGP SIGNED MESSAGE-----'
const PUBLIC_KEY_BLOCK = /-----BEGIN PGP PUBLIC KEY BLOCK-----[\s\S]*?-----END PGP PUBLIC KEY BLOCK-----/g

/**
 * Reads a keyring: binary (concatenated key packets, like the files in
 * /usr/share/keyrings) or armored (one or several public key blocks).
 * `source` names where the bytes came from, for error messages.
 */
export async function readKeyring(bytes: Uint8Array, source: string): Promise<openpgp.PublicKey[]> {
  if (bytes.length === 0) {
    throw new KeyringError(`keyring ${source} is empty`)
  }
  let keys: openpgp.Key[]
  try {
    // Every binary OpenPGP packet starts with a tag byte whose high bit is set;
    // armored text never does.
    if ((bytes[0]! & 0x80) !== 0) {
      keys = await openpgp.readKeys({ binaryKeys: bytes })
    } else {
      const blocks = new TextDecoder().decode(bytes).match(PUBLIC_KEY_BLOCK) ?? []
      if (blocks.length === 0) {
        throw new Error('no binary key packets and no "-----BEGIN PGP PUBLIC KEY BLOCK-----"')
      }
      keys = (await Promise.all(blocks.map((armoredKeys) => openpgp.readKeys({ armoredKeys })))).flat()
    }
  } catch (error) {
    throw new KeyringError(`keyring ${source} is not readable: ${oneLine(error)}`)
  }
  if (keys.length === 0) {
    throw new KeyringError(`keyring ${source} holds no public key`)
  }
  return keys.map((key) => (key.isPrivate() ? key.toPublic() : key))
}

/**
 * Checks a clearsigned document against `keys` and returns the signed text
 * (dash-escaping undone, ending with a newline, as gpgv prints it). Throws
 * `SignatureError` unless at least one signature is valid by one of the keys.
 */
export async function verifyClearsigned(text: string, keys: openpgp.PublicKey[]): Promise<string> {
  if (!text.trimStart().startsWith(SIGNED_MESSAGE_HEADER)) {
    throw new SignatureError('unsigned', `not a clearsigned document (no "${SIGNED_MESSAGE_HEADER}")`)
  }
  let message: openpgp.CleartextMessage
  try {
    message = await openpgp.readCleartextMessage({ cleartextMessage: text })
  } catch (error) {
    throw new SignatureError('bad-signature', `malformed clearsigned document: ${oneLine(error)}`)
  }
  const result = await openpgp.verify({ message, verificationKeys: keys })
  if (result.signatures.length === 0) {
    throw new SignatureError('unsigned', 'clearsigned document carries no signature')
  }
  // Settle all at once: a rejection left without a handler would crash the process.
  const outcomes = await Promise.allSettled(result.signatures.map((signature) => signature.verified))
  if (outcomes.some((outcome) => outcome.status === 'fulfilled')) {
    return `${result.data}\n`
  }
  const failures = outcomes.map((outcome) => (outcome.status === 'rejected' ? oneLine(outcome.reason) : ''))
  const known = new Set(keys.flatMap((key) => key.getKeyIDs().map((id) => id.toHex().toUpperCase())))
  const signers = result.signatures.map((signature) => signature.keyID.toHex().toUpperCase())
  if (!signers.some((id) => known.has(id))) {
    throw new SignatureError('unknown-key', `signed by key ${signers.join(', ')}, which is not in the keyring`)
  }
  throw new SignatureError('bad-signature', `signature does not match the text: ${failures.join('; ')}`)
}

/**
 * Clearsigns `text` with `key`, producing LF line endings like `gpg --clearsign`.
 * The text must end with a newline and have no trailing blanks or carriage
 * returns on any line: the OpenPGP cleartext rules do not sign those bytes, so
 * a document relying on them could not round-trip. JSON from `JSON.stringify`
 * plus `'\n'` always qualifies.
 */
export async function clearsign(text: string, key: openpgp.PrivateKey): Promise<string> {
  if (!text.endsWith('\n')) {
    throw new Error('cannot clearsign text that does not end with a newline')
  }
  const blank = /[ \t]$|\r/m.exec(text.slice(0, -1))
  if (blank !== null) {
    const line = text.slice(0, blank.index).split('\n').length
    throw new Error(`cannot clearsign text with trailing whitespace or a carriage return on line ${line}`)
  }
  const message = await openpgp.createCleartextMessage({ text: text.slice(0, -1) })
  const armored = await openpgp.sign({ message, signingKeys: key })
  // openpgp writes the cleartext with CRLF; signatures cover canonical CRLF
  // text either way, so LF is equally valid and is what upstream files use.
  return armored.replaceAll('\r\n', '\n')
}

function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, ' ')
}
