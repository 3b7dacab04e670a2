/**
 * The proxy's own OpenPGP key, which signs the metadata it rewrites. MAAS is
 * handed the public half (binary, as `keyring_data` or a keyring file).
 *
 * The private key is stored UNENCRYPTED (armored, mode 0600): the service has
 * to start and sign unattended, so there is nobody to type a passphrase.
 * Protect the file as you would an SSH host key.
 */
import { randomBytes } from 'node:crypto'
import { link, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import * as openpgp from 'openpgp'

export interface SigningKey {
  privateKey: openpgp.PrivateKey
  publicKey: openpgp.PublicKey
  /** The public key as binary packets: a keyring gpgv reads directly. */
  publicBinary: Uint8Array
  publicArmored: string
  /** Upper-case hex, as gpg prints it. */
  fingerprint: string
}

export class SigningKeyError extends Error {
  override name = 'SigningKeyError'
}

export interface GenerateOptions {
  /** The user id's name; default `sstream-proxy signing key`. */
  name?: string
}

/**
 * Generates a v4 Ed25519 (EdDSA legacy) signing-only key: gpg 2.2, which MAAS
 * hosts run, verifies these but not the v6 / RFC 9580 Ed25519 format.
 */
export async function generateSigningKey(options: GenerateOptions = {}): Promise<SigningKey> {
  const { privateKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'ed25519Legacy',
    userIDs: [{ name: options.name ?? 'sstream-proxy signing key' }],
    subkeys: [],
    format: 'object',
    config: { v6Keys: false },
  })
  return fromPrivateKey(privateKey)
}

/**
 * Writes the armored private key with mode 0600, atomically (temporary file,
 * then link or rename), so a crash never leaves a half-written key behind.
 */
export async function saveSigningKey(path: string, key: SigningKey, options: { force?: boolean } = {}): Promise<void> {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  try {
    const file = await open(temporary, 'wx', 0o600)
    try {
      await file.writeFile(key.privateKey.armor())
      await file.sync()
    } finally {
      await file.close()
    }
    if (options.force === true) {
      await rename(temporary, path)
    } else {
      // link() fails when the target exists, which makes the refusal race-free.
      await link(temporary, path)
    }
  } catch (error) {
    if (errorCode(error) === 'EEXIST') {
      throw new SigningKeyError(`signing key ${path} already exists; refusing to overwrite it without force`)
    }
    throw new SigningKeyError(`cannot write signing key ${path}: ${(error as Error).message}`)
  } finally {
    await unlink(temporary).catch(() => undefined)
  }
}

/** Reads an unencrypted private key, armored or binary. */
export async function loadSigningKey(path: string): Promise<SigningKey> {
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (error) {
    if (errorCode(error) === 'ENOENT') {
      throw new SigningKeyError(`signing key ${path} does not exist`)
    }
    throw new SigningKeyError(`cannot read signing key ${path}: ${(error as Error).message}`)
  }
  let privateKey: openpgp.PrivateKey
  try {
    privateKey = (bytes[0]! & 0x80) !== 0
      ? await openpgp.readPrivateKey({ binaryKey: bytes })
      : await openpgp.readPrivateKey({ armoredKey: bytes.toString('utf8') })
  } catch (error) {
    throw new SigningKeyError(`signing key ${path} is not an OpenPGP private key: ${(error as Error).message.split('\n')[0]}`)
  }
  if (!privateKey.isDecrypted()) {
    throw new SigningKeyError(`signing key ${path} is protected by a passphrase; the service needs an unencrypted key`)
  }
  try {
    await privateKey.getSigningKey()
  } catch (error) {
    throw new SigningKeyError(`signing key ${path} cannot sign: ${(error as Error).message.split('\n')[0]}`)
  }
  return fromPrivateKey(privateKey)
}

/** Loads the key at `path`, or generates and saves one (creating the directory) when there is none. */
export async function loadOrCreateSigningKey(path: string): Promise<{ key: SigningKey; created: boolean }> {
  const exists = await stat(path).then(
    () => true,
    (error: unknown) => {
      if (errorCode(error) === 'ENOENT') return false
      throw new SigningKeyError(`cannot read signing key ${path}: ${(error as Error).message}`)
    },
  )
  if (exists) {
    return { key: await loadSigningKey(path), created: false }
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 }).catch((error: unknown) => {
    throw new SigningKeyError(`cannot create the directory of signing key ${path}: ${(error as Error).message}`)
  })
  const key = await generateSigningKey()
  await saveSigningKey(path, key)
  return { key, created: true }
}

function fromPrivateKey(privateKey: openpgp.PrivateKey): SigningKey {
  const publicKey = privateKey.toPublic()
  return {
    privateKey,
    publicKey,
    publicBinary: publicKey.write(),
    publicArmored: publicKey.armor(),
    fingerprint: publicKey.getFingerprint().toUpperCase(),
  }
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code
}
