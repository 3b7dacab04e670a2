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
const SIGNATURE_BEGIN = '\n-----BEGIN PGP SIGNATURE-----'
const SIGNATURE_END = '-----END PGP SIGNATURE-----'
// A signature block holds a few hundred bytes per signature.
const MAX_SIGNATURE_BLOCK = 64 * 1024
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
  await checkSignatureBlock(text, keys)
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
 * The shape of a clearsigned document, without reading any of it: the
 * header at its start and an armored signature block of a real size at its
 * end. Synchronous and a few string searches long, so the thread that fetched
 * a document can refuse an unsigned one before handing it on; returns the
 * signature block.
 */
export function checkClearsignedShape(text: string): string {
  if (!text.trimStart().startsWith(SIGNED_MESSAGE_HEADER)) {
    throw new SignatureError('unsigned', `not a clearsigned document (no "${SIGNED_MESSAGE_HEADER}")`)
  }
  // The end first: a document without the armor's last line is refused
  // without a scan of its megabytes for the armor's first one.
  // Dash-escaping turns a signed line starting with "-" into "- -", so the last one at a line start is the armor.
  const begin = text.trimEnd().endsWith(SIGNATURE_END) ? text.lastIndexOf(SIGNATURE_BEGIN) : -1
  if (begin === -1) {
    throw new SignatureError('bad-signature', `malformed clearsigned document: no "${SIGNATURE_BEGIN.trim()}" ... "${SIGNATURE_END}" block at its end`)
  }
  const block = text.slice(begin + 1)
  if (block.length > MAX_SIGNATURE_BLOCK) {
    throw new SignatureError('bad-signature', `signature block of ${block.length} bytes (a real one is under ${MAX_SIGNATURE_BLOCK})`)
  }
  return block
}

/**
 * The cheap checks before the cleartext parser, which splits the whole text
 * line by line: an unsigned document, or one signed by a key outside the
 * keyring, is refused in milliseconds however large it is. Reads only the
 * armored signature block at the end and compares its issuers with the keyring.
 */
async function checkSignatureBlock(text: string, keys: openpgp.PublicKey[]): Promise<void> {
  const block = checkClearsignedShape(text)
  let signature: openpgp.Signature
  try {
    signature = await openpgp.readSignature({ armoredSignature: block })
  } catch (error) {
    throw new SignatureError('bad-signature', `malformed signature block: ${oneLine(error)}`)
  }
  const known = new Set(keys.flatMap((key) => key.getKeyIDs().map((id) => id.toHex().toUpperCase())))
  const issuers = signature.packets.map((packet) => packet.issuerKeyID.toHex().toUpperCase())
  if (issuers.length === 0) throw new SignatureError('unsigned', 'signature block carries no signature')
  if (!issuers.some((id) => known.has(id))) {
    throw new SignatureError('unknown-key', `signed by key ${issuers.join(', ')}, which is not in the keyring`)
  }
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
  const signed = text.slice(0, -1)
  const blank = firstTrailingBlank(signed)
  if (blank !== -1) {
    const line = signed.slice(0, blank).split('\n').length
    throw new Error(`cannot clearsign text with trailing whitespace or a carriage return on line ${line}`)
  }
  // A text-mode detached signature covers exactly what a cleartext signature
  // does (the text with CRLF line breaks). openpgp's own cleartext path would
  // also strip trailing blanks line by line, which costs several times the
  // signature on a large products document and which the check above makes
  // needless; so the armor is assembled here, the way openpgp would write it.
  const signature = await openpgp.sign({ message: await openpgp.createMessage({ text: signed }), signingKeys: key, detached: true, format: 'object' })
  const packets = [...signature.packets] as openpgp.SignaturePacket[]
  // As openpgp does: a `Hash:` header and a CRC unless every signature is v6.
  const legacy = packets.some((packet) => packet.version !== 6)
  const hash = legacy ? [...new Set(packets.map((packet) => openpgp.enums.read(openpgp.enums.hash, packet.hashAlgorithm!).toUpperCase()))].join() : null
  return openpgp.armor(openpgp.enums.armor.signed, { hash, text: signed, data: signature.packets.write() }, undefined, undefined, undefined, legacy)
}

/** Where the first line ending in a space or tab, or the first carriage return, is; -1 if none. */
function firstTrailingBlank(text: string): number {
  // Plain searches: a multi-line regular expression scans a 7 MB document several times slower.
  const found = [text.indexOf(' \n'), text.indexOf('\t\n'), text.indexOf('\r')].filter((at) => at !== -1)
  if (text.endsWith(' ') || text.endsWith('\t')) found.push(text.length - 1)
  return found.length === 0 ? -1 : Math.min(...found)
}

function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, ' ')
}
