import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { isSafeItemPath, unsafePathReason } from '../../src/streams/item-path.js'

describe('isSafeItemPath', () => {
  test('accepts the paths real MAAS streams use', () => {
    for (const path of [
      'noble/amd64/20250709/ga-24.04/generic/boot-kernel',
      'noble/amd64/20250709/squashfs',
      'noble/amd64/20250709/squashfs.manifest',
      'bootloaders/uefi/amd64/20231004.0/grub2-signed.tar.xz',
      'streams/v1/com.ubuntu.maas:stable:v3:download.sjson',
      'centos/centos70/amd64/20200109/root-tgz',
    ]) {
      assert.equal(isSafeItemPath(path), true, path)
    }
  })

  test('a name that merely contains dots is not a dot segment', () => {
    assert.equal(isSafeItemPath('a/..b/c.'), true)
    assert.equal(isSafeItemPath('.hidden/...'), true)
  })

  test('rejects each unsafe form, saying why', () => {
    const cases: Array<[string, string]> = [
      ['', 'empty'],
      ['/etc/passwd', 'absolute'],
      ['../secret', 'has a ".." segment'],
      ['noble/../../etc', 'has a ".." segment'],
      ['noble/..', 'has a ".." segment'],
      ['./noble', 'has a "." segment'],
      ['noble/./squashfs', 'has a "." segment'],
      ['a//b', 'has an empty segment'],
      ['noble/amd64/', 'has an empty segment'],
      ['noble\\..\\etc', 'contains "\\"'],
      ['noble/squashfs\u0000.txt', 'contains a control character'],
      ['noble/squash\nfs', 'contains a control character'],
      ['noble/squash\u007ffs', 'contains a control character'],
      ['noble/squash\u0085fs', 'contains a control character'],
      ['%2e%2e/etc', 'contains "%"'],
      ['noble/squashfs?x=1', 'contains "?"'],
      ['noble/squashfs#frag', 'contains "#"'],
    ]
    for (const [path, reason] of cases) {
      assert.equal(unsafePathReason(path), reason, JSON.stringify(path))
      assert.equal(isSafeItemPath(path), false, JSON.stringify(path))
    }
  })
})
