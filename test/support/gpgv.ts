/**
 * Runs the real `gpgv` (what MAAS runs) on a clearsigned document, so tests
 * prove signatures against GnuPG and not only against openpgp.js.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

export interface GpgvResult {
  /** gpgv exited 0: a good signature by a key in the keyring. */
  ok: boolean
  exitCode: number
  /** What gpgv printed to stderr (signature details or the failure). */
  stderr: string
  /** The signed text gpgv extracted (`-o`), empty when it failed. */
  output: string
}

/** Checks the clearsigned file at `file` against the binary keyring file at `keyring`. */
export async function gpgvFile(keyring: string, file: string): Promise<GpgvResult> {
  // A private GNUPGHOME keeps gpgv away from the user's ~/.gnupg.
  const home = await mkdtemp(join(tmpdir(), 'gpgv-home-'))
  const out = join(home, 'out')
  try {
    // gpgv looks a keyring without a slash up in GNUPGHOME, so pass it absolute.
    const args = ['--keyring', resolve(keyring), '--output', out, resolve(file)]
    const { exitCode, stderr } = await new Promise<{ exitCode: number; stderr: string }>((done) => {
      execFile('/usr/bin/gpgv', args, { env: { ...process.env, GNUPGHOME: home, LC_ALL: 'C' } }, (error, _stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1
        done({ exitCode: code, stderr })
      })
    })
    const output = exitCode === 0 ? await readFile(out, 'utf8') : ''
    return { ok: exitCode === 0, exitCode, stderr, output }
  } finally {
    await rm(home, { recursive: true, force: true })
  }
}

/** Checks clearsigned `text` against a keyring given as bytes. */
export async function gpgvText(keyring: Uint8Array, text: string): Promise<GpgvResult> {
  const dir = await mkdtemp(join(tmpdir(), 'gpgv-input-'))
  try {
    await writeFile(join(dir, 'keyring.gpg'), keyring)
    await writeFile(join(dir, 'signed.sjson'), text)
    return await gpgvFile(join(dir, 'keyring.gpg'), join(dir, 'signed.sjson'))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * Clearsigns `text` with the real `gpg --clearsign` and the given armored
 * private key: a document in exactly the shape upstream publishes.
 */
export async function gpgClearsign(privateArmored: string, fingerprint: string, text: string): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'gpg-home-'))
  const env = { ...process.env, GNUPGHOME: home, LC_ALL: 'C' }
  const gpg = (args: string[], input?: string) =>
    new Promise<string>((done, fail) => {
      const child = execFile('/usr/bin/gpg', ['--batch', '--quiet', ...args], { env }, (error, stdout, stderr) => {
        if (error === null) done(stdout)
        else fail(new Error(`gpg ${args.join(' ')} failed: ${stderr.trim()}`))
      })
      child.stdin?.end(input ?? '')
    })
  try {
    await gpg(['--import'], privateArmored)
    return await gpg(['--pinentry-mode', 'loopback', '--passphrase', '', '--local-user', fingerprint, '--clearsign'], text)
  } finally {
    // gpg started an agent for this home; stop it before removing its socket directory.
    await new Promise((done) => execFile('/usr/bin/gpgconf', ['--kill', 'gpg-agent'], { env }, done))
    await rm(home, { recursive: true, force: true })
  }
}
