/**
 * The real executable, spawned as an operator runs it: output, exit status and
 * binary stdout through a pipe. Thorough cases live in run-cli.test.ts, in process.
 */
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as openpgp from 'openpgp'

const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))
// Resolved here because the child runs in a temporary directory, where `--import tsx` would not be found.
const tsx = import.meta.resolve('tsx')

interface Exit {
  code: number | null
  stdout: Buffer
  stderr: string
}

function sstreamProxy(args: string[], cwd: string): Promise<Exit> {
  const env = { ...process.env }
  delete env.SSTREAM_PROXY_CONFIG
  const child = spawn(process.execPath, ['--import', tsx, cli, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const stdout: Buffer[] = []
  const stderr: Buffer[] = []
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))
  return new Promise((done, fail) => {
    child.on('error', fail)
    child.on('close', (code) => done({ code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString('utf8') }))
  })
}

let cwd: string

before(async () => {
  cwd = await mkdtemp(join(tmpdir(), 'sstream-cli-'))
})
after(async () => {
  await rm(cwd, { recursive: true, force: true })
})

describe('sstream-proxy executable', () => {
  test('--help, --version, and bad input as one line with exit 2', async () => {
    const badConfigDir = await mkdtemp(join(cwd, 'bad-config-'))
    await writeFile(join(badConfigDir, 'config.json'), JSON.stringify({ mirrors: [{ name: 'a', path: '/a/', upstream: 'https://x.example/' }], metadataTtl: '10x' }))
    const [help, version, unknown, badFlag, badConfig] = await Promise.all([
      sstreamProxy(['--help'], cwd),
      sstreamProxy(['--version'], cwd),
      sstreamProxy(['srve'], cwd),
      sstreamProxy(['keygen', '--frce'], cwd),
      sstreamProxy(['keygen'], badConfigDir),
    ])
    assert.equal(help.code, 0)
    assert.match(help.stdout.toString(), /^Usage: sstream-proxy <command>[\s\S]*\n {2}keygen +[\s\S]*\n {2}key +/)

    const { version: expected } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    assert.equal(version.code, 0)
    assert.equal(version.stdout.toString(), `sstream-proxy ${expected}\n`)

    assert.deepEqual([unknown.code, unknown.stderr], [2, 'sstream-proxy: unknown command "srve" (see sstream-proxy --help)\n'])
    assert.deepEqual([badFlag.code, badFlag.stderr], [2, 'sstream-proxy: keygen: unknown option --frce (see sstream-proxy keygen --help)\n'])
    assert.deepEqual(
      [badConfig.code, badConfig.stderr],
      [2, 'sstream-proxy: config.json: metadataTtl: "10x" is not a duration (use 30s, 10m, 1h, 1d or a number of seconds)\n'],
    )
  })

  test('keygen creates a 0600 key once; key writes it binary or armored', async () => {
    const created = await sstreamProxy(['keygen'], cwd)
    assert.equal(created.code, 0, created.stderr)
    const keyPath = join(cwd, 'data', 'signing-key.asc')
    assert.equal((await stat(keyPath)).mode & 0o777, 0o600)
    const fingerprint = /created signing key ([0-9A-F]{40}) at (.*)\n/.exec(created.stdout.toString())
    assert.equal(fingerprint?.[2], keyPath)

    const [again, binary, armored] = await Promise.all([
      sstreamProxy(['keygen'], cwd),
      sstreamProxy(['key'], cwd),
      sstreamProxy(['key', '--armor'], cwd),
    ])
    assert.equal(again.code, 1)
    assert.match(again.stderr, /already exists \(use --force to replace it\)\n$/)

    assert.equal(binary.code, 0, binary.stderr)
    const publicKey = await openpgp.readKey({ binaryKey: binary.stdout })
    assert.equal(publicKey.getFingerprint().toUpperCase(), fingerprint?.[1])

    assert.equal(armored.code, 0, armored.stderr)
    assert.ok(armored.stdout.toString().startsWith('-----BEGIN PGP PUBLIC KEY BLOCK-----\n'))
  })
})
