import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { describe, test } from 'node:test'
import { promisify } from 'node:util'
import { batchedWriter, createLogger } from '../../src/log/logger.js'

const nextTurn = () => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A stream that records each write call. */
function recordingStream() {
  const writes: string[] = []
  return { writes, write: (chunk: string) => writes.push(chunk) }
}

describe('batchedWriter', () => {
  test('info lines wait for the delay and go out together in one write', async () => {
    const stream = recordingStream()
    const write = batchedWriter(stream, { delayMs: 30 })
    write('one', 'info')
    write('two', 'info')
    await nextTurn()
    assert.deepEqual(stream.writes, [])
    await sleep(60)
    assert.deepEqual(stream.writes, ['one\ntwo\n'])
  })

  test('a warning or an error takes the waiting lines out on the same turn', async () => {
    const stream = recordingStream()
    const write = batchedWriter(stream, { delayMs: 10_000 })
    write('request', 'info')
    write('upstream down', 'warn')
    await nextTurn()
    assert.deepEqual(stream.writes, ['request\nupstream down\n'])
  })

  test('writes at once when maxBytes are waiting', () => {
    const stream = recordingStream()
    const write = batchedWriter(stream, { delayMs: 10_000, maxBytes: 10 })
    write('12345', 'info')
    assert.deepEqual(stream.writes, [])
    write('67890', 'info')
    assert.deepEqual(stream.writes, ['12345\n67890\n'])
  })

  test('lines still waiting are written when the process exits', async () => {
    const script = `
      import { batchedWriter, createLogger } from './src/log/logger.ts'
      const log = createLogger({ json: true, write: batchedWriter(process.stdout, { delayMs: 60_000 }) })
      log.info('last words', { n: 1 })
    `
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: new URL('../../', import.meta.url) })
    assert.match(stdout, /^\{"time":"[^"]+","level":"info","message":"last words","n":1\}\n$/)
  })
})

describe('createLogger', () => {
  test('JSON lines carry an ISO time, the level, the message and the defined fields', () => {
    const lines: Array<[string, string]> = []
    const log = createLogger({ json: true, write: (line, level) => lines.push([line, level]) })
    log.warn('slow', { path: '/x', ms: 12, cache: undefined })
    const [line, level] = lines[0] ?? []
    assert.equal(level, 'warn')
    const parsed = JSON.parse(line ?? '') as Record<string, unknown>
    assert.equal(new Date(parsed.time as string).toISOString(), parsed.time)
    assert.deepEqual({ ...parsed, time: undefined }, { time: undefined, level: 'warn', message: 'slow', path: '/x', ms: 12 })
  })

  test('JSON lines read back exactly as JSON.stringify would write the fields', () => {
    const lines: string[] = []
    const log = createLogger({ json: true, write: (line) => lines.push(line) })
    const fields = {
      plain: 'GET',
      quoted: 'a "b" \\ c',
      control: 'tab\tnewline\nnul\u0000',
      unicode: 'é ü 日本 😀',
      lone: 'x\ud800y',
      numbers: [0, -1.5, 1e21],
      notFinite: Number.NaN,
      yes: true,
      no: false,
      nothing: null,
      nested: { path: '/a"b', list: [1, 'two'] },
      skipped: undefined,
    }
    log.info('a "quoted" message', fields)
    const expected = JSON.stringify({ time: 'T', level: 'info', message: 'a "quoted" message', ...fields })
    assert.equal((lines[0] ?? '').replace(/^\{"time":"[^"]+"/, '{"time":"T"'), expected)
  })

  test('text lines read time, level, message and key=value pairs', () => {
    const lines: string[] = []
    const log = createLogger({ json: false, write: (line) => lines.push(line) })
    log.error('cannot save', { file: '/var/lib/x y', code: 5 })
    assert.match(lines[0] ?? '', /^\d{4}-\d\d-\d\dT\S+Z ERROR cannot save file="\/var\/lib\/x y" code=5$/)
  })
})
