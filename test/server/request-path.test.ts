import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { rawRequestPath, resolveRequestPath } from '../../src/server/request-path.js'

const stable = { name: 'stable', config: { path: '/maas/images/ephemeral-v3/stable/' } }
const candidate = { name: 'candidate', config: { path: '/maas/images/ephemeral-v3/candidate/' } }
const MIRRORS = [stable, candidate]
const ITEM = 'noble/amd64/20250201/squashfs'

describe('resolveRequestPath', () => {
  test('finds the mirror whose path prefixes the request and the path inside it', () => {
    assert.deepEqual(resolveRequestPath(`/maas/images/ephemeral-v3/stable/${ITEM}`, MIRRORS), { kind: 'mirror', mirror: stable, path: ITEM })
    assert.deepEqual(resolveRequestPath('/maas/images/ephemeral-v3/candidate/streams/v1/index.sjson', MIRRORS), {
      kind: 'mirror',
      mirror: candidate,
      path: 'streams/v1/index.sjson',
    })
  })

  test('decodes harmless percent-encoding and then resolves', () => {
    const resolved = resolveRequestPath('/maas/images/ephemeral-v3/stable/streams/v1/com.ubuntu.maas%3Astable%3Av3%3Adownload.sjson', MIRRORS)
    assert.deepEqual(resolved, { kind: 'mirror', mirror: stable, path: 'streams/v1/com.ubuntu.maas:stable:v3:download.sjson' })
  })

  test('paths under no mirror are outside', () => {
    for (const path of ['/', '/status', '/maas/images/ephemeral-v3/', '/maas/images/ephemeral-v3/daily/x', '/other/noble/squashfs', '//maas/images/ephemeral-v3/stable/x']) {
      assert.deepEqual(resolveRequestPath(path, MIRRORS), { kind: 'outside' }, path)
    }
  })

  test('the probe of the mirror path without its trailing slash is outside, not a file of the mirror', () => {
    assert.deepEqual(resolveRequestPath('/maas/images/ephemeral-v3/stablestreams/v1/index.sjson', MIRRORS), { kind: 'outside' })
    assert.deepEqual(resolveRequestPath('/maas/images/ephemeral-v3/stable', MIRRORS), { kind: 'outside' })
  })

  test('the mirror root itself is outside', () => {
    assert.deepEqual(resolveRequestPath('/maas/images/ephemeral-v3/stable/', MIRRORS), { kind: 'outside' })
  })

  test('every unsafe form is refused, raw or percent-encoded in either case', () => {
    const root = '/maas/images/ephemeral-v3/stable/'
    const unsafe = [
      `${root}../../etc/passwd`,
      `${root}noble/../../../etc/passwd`,
      `${root}noble/..`,
      `${root}./noble/squashfs`,
      `${root}noble/./squashfs`,
      '/maas/images/ephemeral-v3/../ephemeral-v3/stable/x',
      `${root}%2e%2e/%2e%2e/etc/passwd`,
      `${root}%2E%2E/etc/passwd`,
      `${root}.%2e/etc/passwd`,
      `${root}%2e/noble`,
      `${root}noble%2f..%2f..%2fetc`,
      `${root}noble%2Fsquashfs`,
      `${root}noble%5c..%5cetc`,
      `${root}noble%5Csquashfs`,
      `${root}noble\\..\\etc`,
      `${root}noble\\squashfs`,
      `${root}noble%00.txt`,
      `${root}noble\0.txt`,
      `${root}%252e%252e/etc/passwd`,
      `${root}noble%25`,
      `${root}noble%zz`,
      `${root}noble%`,
      `${root}%c0%ae%c0%ae/etc`,
      `${root}noble%0asquashfs`,
      `${root}noble%7fsquashfs`,
      `${root}noble%3fsquashfs`,
      `${root}noble%23squashfs`,
      `${root}/etc/passwd`,
      `${root}noble//squashfs`,
      `${root}noble/`,
    ]
    for (const path of unsafe) {
      const resolved = resolveRequestPath(path, MIRRORS)
      assert.equal(resolved.kind, 'unsafe', path)
      assert.ok(resolved.kind === 'unsafe' && resolved.reason.length > 0, path)
    }
  })

  test('an unsafe path is refused even outside every mirror', () => {
    assert.equal(resolveRequestPath('/../etc/passwd', MIRRORS).kind, 'unsafe')
    assert.equal(resolveRequestPath('/%2e%2e/etc/passwd', MIRRORS).kind, 'unsafe')
  })

  test('names that merely contain dots are safe', () => {
    const path = 'bootloaders/uefi/amd64/20231004.0/grub2-signed.tar.xz'
    assert.deepEqual(resolveRequestPath(`/maas/images/ephemeral-v3/stable/${path}`, MIRRORS), { kind: 'mirror', mirror: stable, path })
    assert.equal(resolveRequestPath('/maas/images/ephemeral-v3/stable/noble/..hidden/x...', MIRRORS).kind, 'mirror')
  })
})

describe('rawRequestPath', () => {
  test('keeps the path exactly as sent and drops the query and fragment', () => {
    assert.equal(rawRequestPath('/a/%2e%2e/b?x=1'), '/a/%2e%2e/b')
    assert.equal(rawRequestPath('/a/../b#frag'), '/a/../b')
    assert.equal(rawRequestPath('/a/b'), '/a/b')
  })

  test('takes the path out of an absolute URL', () => {
    assert.equal(rawRequestPath('http://127.0.0.1:8080/a/%2e%2e/b?x=1'), '/a/%2e%2e/b')
    assert.equal(rawRequestPath('http://127.0.0.1:8080'), '/')
  })
})
