import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli, type RunCliOptions } from '../../src/cli/run-cli.js'
import { UsageError, type Command } from '../../src/cli/command.js'
import { commands } from '../../src/cli/commands/index.js'

let root: string
let counter = 0

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'sstream-run-cli-'))
})
after(async () => {
  await rm(root, { recursive: true, force: true })
})

async function freshDir(): Promise<string> {
  const dir = join(root, String(counter++))
  await mkdir(dir)
  return dir
}

interface Run {
  code: number
  stdout: string
  stderr: string
}

/** Runs the CLI in this process with captured output, an empty environment and `cwd`. */
async function run(argv: string[], options: RunCliOptions = {}): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(argv, {
    cwd: options.cwd ?? (await freshDir()),
    env: {},
    stdout: { write: (chunk) => (stdout += String(chunk)) },
    stderr: { write: (chunk) => (stderr += String(chunk)) },
    ...options,
  })
  return { code, stdout, stderr }
}

/** Asserts a bad-input failure: exit 2, nothing on stdout, exactly `line` on stderr. */
function assertUsageError(result: Run, line: string): void {
  assert.equal(result.stderr, `${line}\n`)
  assert.equal(result.stdout, '')
  assert.equal(result.code, 2)
}

/** A command that records what it was given and does what `behaviour` says. */
function probe(behaviour: (args: Parameters<Command['run']>[0], context: Parameters<Command['run']>[1]) => Promise<number>): Command {
  return {
    name: 'probe',
    summary: 'a command for tests',
    usage: 'probe [--level N] [--dry-run]',
    options: {
      level: { type: 'string', valueName: 'N', description: 'a level' },
      'dry-run': { type: 'boolean', short: 'n', description: 'do nothing' },
    },
    run: behaviour,
  }
}

describe('runCli help and version', () => {
  test('--help and -h list every registered command and exit 0', async () => {
    for (const flag of ['--help', '-h']) {
      const result = await run([flag])
      assert.equal(result.code, 0)
      assert.equal(result.stderr, '')
      assert.match(result.stdout, /^Usage: sstream-proxy <command>/)
      for (const command of commands) {
        assert.match(result.stdout, new RegExp(`\\n  ${command.name} +${command.summary.replace(/[()]/g, '\\$&')}\\n`))
      }
      assert.match(result.stdout, /--config FILE/)
      assert.match(result.stdout, /-V, --version/)
    }
  })

  test('--version and -V print the package.json version', async () => {
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    for (const flag of ['--version', '-V']) {
      assert.deepEqual(await run([flag]), { code: 0, stdout: `sstream-proxy ${version}\n`, stderr: '' })
    }
  })

  test('every command has --help with its usage, its options and --config, without loading the configuration', async () => {
    const cwd = await freshDir()
    await writeFile(join(cwd, 'config.json'), '{ broken')
    for (const command of commands) {
      const result = await run([command.name, '--help'], { cwd })
      assert.equal(result.code, 0, result.stderr)
      assert.ok(result.stdout.startsWith(`Usage: sstream-proxy ${command.usage} [--config FILE]\n`), result.stdout)
      for (const name of Object.keys(command.options)) {
        assert.match(result.stdout, new RegExp(`--${name}\\b`))
      }
      assert.match(result.stdout, /--config FILE +configuration file/)
    }
  })

  test('command help shows short flags and value names', async () => {
    const result = await run(['probe', '-h'], { commands: [probe(async () => 0)] })
    assert.match(result.stdout, /\n {6}--level N +a level\n/)
    assert.match(result.stdout, /\n {2}-n, --dry-run +do nothing\n/)
  })
})

describe('runCli bad input: one line, exit 2', () => {
  test('no command', async () => {
    assertUsageError(await run([]), 'sstream-proxy: missing command (see sstream-proxy --help)')
  })

  test('an unknown command', async () => {
    assertUsageError(await run(['srve']), 'sstream-proxy: unknown command "srve" (see sstream-proxy --help)')
  })

  test('an unknown option before the command', async () => {
    assertUsageError(await run(['--force', 'keygen']), 'sstream-proxy: unknown option --force (see sstream-proxy --help)')
  })

  test("an unknown option of a command", async () => {
    assertUsageError(await run(['keygen', '--frce']), 'sstream-proxy: keygen: unknown option --frce (see sstream-proxy keygen --help)')
  })

  test('--config without a value, before or after the command', async () => {
    assertUsageError(await run(['--config']), 'sstream-proxy: option --config needs a value (see sstream-proxy --help)')
    assertUsageError(await run(['--config', 'keygen']), 'sstream-proxy: missing command (see sstream-proxy --help)')
    assertUsageError(await run(['keygen', '--config']), 'sstream-proxy: keygen: option --config needs a value (see sstream-proxy keygen --help)')
    assertUsageError(await run(['keygen', '--config', '--force']), 'sstream-proxy: keygen: option --config needs a value (see sstream-proxy keygen --help)')
    assertUsageError(await run(['keygen', '--config=']), 'sstream-proxy: keygen: option --config needs a value (see sstream-proxy keygen --help)')
  })

  test('a value given to a flag', async () => {
    assertUsageError(await run(['keygen', '--force=yes']), 'sstream-proxy: keygen: option --force takes no value (see sstream-proxy keygen --help)')
    assertUsageError(await run(['key', '--armor=1']), 'sstream-proxy: key: option --armor takes no value (see sstream-proxy key --help)')
  })

  test('a stray argument', async () => {
    assertUsageError(await run(['keygen', 'now']), 'sstream-proxy: keygen: unexpected argument "now" (see sstream-proxy keygen --help)')
  })

  test('an invalid configuration names the file and the key', async () => {
    const cwd = await freshDir()
    await writeFile(join(cwd, 'config.json'), JSON.stringify({ mirrors: [{ name: 'a', path: '/a/', upstream: 'https://x.example/', selections: [{ filters: ['arch>1'] }] }] }))
    assertUsageError(
      await run(['keygen'], { cwd }),
      'sstream-proxy: config.json: mirrors[0].selections[0].filters[0]: unknown operator in "arch>1" (use =, !=, ~ or !~)',
    )
  })

  test('an unreadable --config names the file', async () => {
    assertUsageError(
      await run(['key', '--config', 'absent.json']),
      'sstream-proxy: absent.json: cannot read the configuration file (named by --config): no such file',
    )
  })

  test('a UsageError thrown by a command', async () => {
    const result = await run(['probe'], { commands: [probe(async () => { throw new UsageError('probe: --level must be a number') })] })
    assertUsageError(result, 'sstream-proxy: probe: --level must be a number')
  })
})

describe('runCli running commands', () => {
  test('passes parsed options and a context whose loadConfig honours --config placed before or after the command', async () => {
    const cwd = await freshDir()
    await writeFile(join(cwd, 'other.json'), JSON.stringify({ mirrors: [{ name: 'other', path: '/o/', upstream: 'https://x.example/' }] }))
    const seen: unknown[] = []
    const command = probe(async (args, context) => {
      const config = await context.loadConfig()
      seen.push([args.values.level, args.values['dry-run'], config.source, config.mirrors[0]?.name, context.cwd])
      return 3
    })
    assert.equal((await run(['probe', '--level', '7', '-n', '--config', 'other.json'], { cwd, commands: [command] })).code, 3)
    assert.equal((await run(['--config', 'other.json', 'probe', '--level=8'], { cwd, commands: [command] })).code, 3)
    assert.equal((await run(['probe'], { cwd, commands: [command] })).code, 3)
    assert.deepEqual(seen, [
      ['7', true, 'other.json', 'other', cwd],
      ['8', undefined, 'other.json', 'other', cwd],
      [undefined, undefined, 'built-in default', 'stable', cwd],
    ])
  })

  test('the context reads $SSTREAM_PROXY_CONFIG from the given environment', async () => {
    const cwd = await freshDir()
    await writeFile(join(cwd, 'env.json'), JSON.stringify({ mirrors: [{ name: 'env', path: '/e/', upstream: 'https://x.example/' }] }))
    let name: string | undefined
    const command = probe(async (_args, context) => {
      name = (await context.loadConfig()).mirrors[0]?.name
      return 0
    })
    await run(['probe'], { cwd, env: { SSTREAM_PROXY_CONFIG: 'env.json' }, commands: [command] })
    assert.equal(name, 'env')
  })

  test('an unexpected error is its message on one line and exit 1', async () => {
    const result = await run(['probe'], { commands: [probe(async () => { throw new Error('disk on fire') })] })
    assert.deepEqual(result, { code: 1, stdout: '', stderr: 'sstream-proxy: disk on fire\n' })
  })
})
