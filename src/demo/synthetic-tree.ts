/**
 * Builds a MAAS-shaped, signed SimpleStreams tree in memory, the upstream every
 * proxy test mirrors and `sstream-proxy demo` serves, in the shapes of the real
 * images.maas.io streams that MAAS 3.8's strict models accept (facts page §5,
 * §6): Ubuntu v3 multi-file images (ga and hwe kernels of each release sharing
 * one squashfs and manifest), the bootloaders in their own content id, and a
 * centos-bases single-file image. File bytes are pseudo-random but derived from
 * the path, so rebuilding with the same options yields the same files.
 */
import { createCipheriv, createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { clearsign } from '../streams/signature.js'
import { generateSigningKey } from '../streams/signing-key.js'
import type { SigningKey } from '../streams/signing-key.js'
import type { IndexDocument, ProductsDocument, StreamItem, StreamProduct } from '../streams/types.js'

export type SizedFile = 'kernel' | 'initrd' | 'squashfs' | 'manifest' | 'bootloader' | 'rootTgz'

export interface TreeOptions {
  /** Default jammy 22.04 and noble 24.04. */
  releases?: Array<{ release: string; version: string }>
  /** Default amd64 and arm64. */
  arches?: string[]
  /** Version names (dates); default 20250101 and 20250201. Bootloaders get `<version>.0`, centos-bases `<version>_01`. */
  versions?: string[]
  /** File sizes in bytes; default kernel 4096, initrd 8192, squashfs 65536, manifest 512, bootloader 2048, rootTgz 16384. */
  sizes?: Partial<Record<SizedFile, number>>
  /** Reuse a key across rebuilds; default a freshly generated one. */
  key?: SigningKey
  /** The stream name in content ids and product names; default `stable`. */
  stream?: string
  /** Changes a products document before it is listed and signed: an upstream that publishes what MAAS rejects, for tests. */
  editProducts?: (contentId: string, document: ProductsDocument) => void
}

export interface TreeItem {
  contentId: string
  product: string
  version: string
  item: string
  ftype: string
  path: string
  size: number
  sha256: string
}

export interface UpstreamTree {
  key: SigningKey
  /** Every file by path relative to the mirror root: metadata (.json and .sjson) and items. */
  files: Map<string, Buffer>
  /** Every item; a shared path appears once per item that names it. */
  items: TreeItem[]
  /** The unsigned index (entries' paths end in `.json`). */
  index: IndexDocument
  /** Products documents by content id. */
  products: Map<string, ProductsDocument>
  /** `streams/v1/<content id>.<ext>`. */
  productsPath(contentId: string, ext: 'json' | 'sjson'): string
  /** Writes the upstream public key into `dir` (created if needed) and returns the file's path. */
  writeKeyring(dir: string, format?: 'binary' | 'armored'): Promise<string>
}

const DEFAULT_SIZES: Record<SizedFile, number> = { kernel: 4096, initrd: 8192, squashfs: 65536, manifest: 512, bootloader: 2048, rootTgz: 16384 }

/** The datatype images.maas.io writes in its index and products files. */
const DATATYPE = 'image-ids'

const CODENAMES: Record<string, string> = { focal: 'Focal Fossa', jammy: 'Jammy Jellyfish', noble: 'Noble Numbat' }

/**
 * Deterministic pseudo-random bytes for `path`: AES-256-CTR keyed by the
 * path's sha256 over zeros, which fills tens of MB in milliseconds.
 */
export function fileBytes(path: string, size: number): Buffer {
  const key = createHash('sha256').update(`upstream-tree:${path}`).digest()
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16))
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()])
}

export async function buildUpstreamTree(options: TreeOptions = {}): Promise<UpstreamTree> {
  const stream = options.stream ?? 'stable'
  const releases = options.releases ?? [{ release: 'jammy', version: '22.04' }, { release: 'noble', version: '24.04' }]
  const arches = options.arches ?? ['amd64', 'arm64']
  const versions = options.versions ?? ['20250101', '20250201']
  const sizes = { ...DEFAULT_SIZES, ...options.sizes }
  const key = options.key ?? (await generateSigningKey({ name: 'Test upstream image signing key' }))
  const updated = timestamp([...versions].sort().at(-1) ?? '')

  const files = new Map<string, Buffer>()
  const items: TreeItem[] = []
  const checksums = new Map<string, { sha256: string; md5: string }>()

  /** Adds one item (creating its file once per path) and returns its metadata entry. */
  function item(
    where: Pick<TreeItem, 'contentId' | 'product' | 'version' | 'item' | 'ftype' | 'path'>,
    size: number,
    extra: Record<string, string> = {},
  ): StreamItem {
    let sums = checksums.get(where.path)
    if (sums === undefined) {
      const bytes = fileBytes(where.path, size)
      files.set(where.path, bytes)
      sums = { sha256: sha256(bytes), md5: createHash('md5').update(bytes).digest('hex') }
      checksums.set(where.path, sums)
    }
    items.push({ ...where, size, sha256: sums.sha256 })
    return { ftype: where.ftype, md5: sums.md5, path: where.path, sha256: sums.sha256, size, ...extra }
  }

  const imagesId = `com.ubuntu.maas:${stream}:v3:download`
  const imageProducts: Record<string, StreamProduct> = {}
  for (const { release, version: osVersion } of releases) {
    for (const arch of arches) {
      for (const kernel of ['ga', 'hwe'] as const) {
        const subarch = `${kernel}-${osVersion}`
        const product = `com.ubuntu.maas.${stream}:v3:boot:${osVersion}:${arch}:${subarch}`
        const entry: StreamProduct = {
          arch,
          kflavor: 'generic',
          krel: release,
          label: stream,
          os: 'ubuntu',
          release,
          release_codename: CODENAMES[release] ?? `${release[0]?.toUpperCase()}${release.slice(1)}`,
          release_title: `${osVersion} LTS`,
          subarch,
          subarches: kernel === 'ga' ? `generic,ga-${osVersion}` : `generic,ga-${osVersion},hwe-${osVersion}`,
          support_eol: supportEol(osVersion),
          version: osVersion,
          versions: {},
        }
        const kpackage = kernel === 'ga' ? 'linux-generic' : `linux-generic-hwe-${osVersion}`
        for (const version of versions) {
          const at = { contentId: imagesId, product, version }
          const dir = `${release}/${arch}/${version}`
          entry.versions[version] = {
            items: {
              'boot-initrd': item({ ...at, item: 'boot-initrd', ftype: 'boot-initrd', path: `${dir}/${subarch}/generic/boot-initrd` }, sizes.initrd, { kpackage }),
              'boot-kernel': item({ ...at, item: 'boot-kernel', ftype: 'boot-kernel', path: `${dir}/${subarch}/generic/boot-kernel` }, sizes.kernel, { kpackage }),
              manifest: item({ ...at, item: 'manifest', ftype: 'manifest', path: `${dir}/squashfs.manifest` }, sizes.manifest),
              squashfs: item({ ...at, item: 'squashfs', ftype: 'squashfs', path: `${dir}/squashfs` }, sizes.squashfs),
            },
          }
        }
        imageProducts[product] = entry
      }
    }
  }

  const bootloadersId = `com.ubuntu.maas:${stream}:1:bootloader-download`
  const bootloaderProducts: Record<string, StreamProduct> = {}
  // The item names are the keys MAAS's bootloader model reads; each item names its source package.
  const bootloaders = [
    {
      os: 'grub-efi-signed', type: 'uefi', arch: 'amd64', arches: 'amd64',
      items: [['grub2-signed', 'grub2-signed', 'focal', '1.187.6+2.06-2ubuntu14.4'], ['shim-signed', 'shim-signed', 'focal', '1.40.9+15.7-0ubuntu1']],
    },
    { os: 'grub-efi', type: 'uefi', arch: 'arm64', arches: 'arm64', items: [['grub2', 'grub2', 'focal', '2.06-2ubuntu14.4']] },
    { os: 'pxelinux', type: 'pxe', arch: 'i386', arches: 'amd64, i386', items: [['syslinux', 'syslinux', 'bionic', '3:6.03+dfsg1-2']] },
  ] as const
  for (const loader of bootloaders) {
    const product = `com.ubuntu.maas.${stream}:1:${loader.os}:${loader.type}:${loader.arch}`
    const entry: StreamProduct = { arch: loader.arch, arches: loader.arches, 'bootloader-type': loader.type, label: stream, os: loader.os, versions: {} }
    for (const date of versions) {
      const version = `${date}.0`
      const items: Record<string, StreamItem> = {}
      for (const [name, src_package, src_release, src_version] of loader.items) {
        const at = { contentId: bootloadersId, product, version, item: name, ftype: 'archive.tar.xz' }
        items[name] = item({ ...at, path: `bootloaders/${loader.type}/${loader.arch}/${version}/${name}.tar.xz` }, sizes.bootloader, { src_package, src_release, src_version })
      }
      entry.versions[version] = { items }
    }
    bootloaderProducts[product] = entry
  }

  // centos-bases: single-file images (a root tarball and its manifest), amd64 only as upstream.
  const centosId = `com.ubuntu.maas:${stream}:centos-bases-download`
  const centosProducts: Record<string, StreamProduct> = {}
  for (const arch of arches.filter((name) => name === 'amd64')) {
    const product = `com.ubuntu.maas.${stream}:centos-bases:7.0:${arch}`
    const entry: StreamProduct = {
      arch,
      label: stream,
      os: 'centos',
      release: 'centos70',
      release_title: 'CentOS 7',
      subarch: 'generic',
      subarches: 'generic',
      support_eol: '2024-06-30',
      version: '7.0',
      versions: {},
    }
    for (const date of versions) {
      const version = `${date}_01`
      const at = { contentId: centosId, product, version }
      const dir = `centos/centos70/${arch}/${version}`
      entry.versions[version] = {
        items: {
          manifest: item({ ...at, item: 'manifest', ftype: 'manifest', path: `${dir}/root-tgz.manifest` }, sizes.manifest),
          'root-tgz': item({ ...at, item: 'root-tgz', ftype: 'root-tgz', path: `${dir}/root-tgz` }, sizes.rootTgz),
        },
      }
    }
    centosProducts[product] = entry
  }

  const products = new Map<string, ProductsDocument>()
  for (const [contentId, entries] of [[bootloadersId, bootloaderProducts], [centosId, centosProducts], [imagesId, imageProducts]] as const) {
    // MAAS rejects a products file with no products: such a content is left out, as upstream does.
    if (Object.keys(entries).length === 0) continue
    const document: ProductsDocument = sortKeys({ content_id: contentId, datatype: DATATYPE, format: 'products:1.0', products: entries, updated })
    options.editProducts?.(contentId, document)
    products.set(contentId, document)
  }

  const productsPath = (contentId: string, ext: 'json' | 'sjson') => `streams/v1/${contentId}.${ext}`
  const indexFor = (ext: 'json' | 'sjson'): IndexDocument => {
    const index: IndexDocument['index'] = {}
    for (const [contentId, doc] of products) {
      index[contentId] = {
        datatype: DATATYPE,
        format: 'products:1.0',
        path: productsPath(contentId, ext),
        products: Object.keys(doc.products).sort(),
        updated,
      }
    }
    return sortKeys({ format: 'index:1.0', index, updated })
  }

  const index = indexFor('json')
  const signed = async (path: string, doc: object, signedDoc: object) => {
    files.set(`${path}.json`, Buffer.from(serialize(doc)))
    files.set(`${path}.sjson`, Buffer.from(await clearsign(serialize(signedDoc), key.privateKey)))
  }
  await signed('streams/v1/index', index, indexFor('sjson'))
  for (const [contentId, doc] of products) {
    await signed(`streams/v1/${contentId}`, doc, doc)
  }

  return {
    key,
    files,
    items,
    index,
    products,
    productsPath,
    async writeKeyring(dir, format = 'binary') {
      await mkdir(dir, { recursive: true })
      const path = join(dir, format === 'binary' ? 'upstream-keyring.gpg' : 'upstream-keyring.asc')
      await writeFile(path, format === 'binary' ? key.publicBinary : key.publicArmored)
      return path
    },
  }
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

// Upstream writes `json.dumps(doc, indent=1, sort_keys=True)`; the trailing
// newline is what makes the .json text equal to the text signed in the .sjson.
function serialize(doc: object): string {
  return `${JSON.stringify(doc, null, 1)}\n`
}

function sortKeys<T>(value: T): T {
  if (Array.isArray(value)) return value.map(sortKeys) as T
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return Object.fromEntries(entries.map(([name, child]) => [name, sortKeys(child)])) as T
  }
  return value
}

/** simplestreams' `updated` format for a version date such as 20250201. */
function timestamp(version: string): string {
  const match = /^(\d{4})(\d{2})(\d{2})/.exec(version)
  const date = match === null ? new Date(Date.UTC(2025, 0, 1)) : new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3])))
  return date.toUTCString().replace('GMT', '+0000')
}

/** Five years of standard support, ending in the release's month. */
function supportEol(osVersion: string): string {
  const [year, month] = osVersion.split('.')
  return `${2000 + Number(year) + 5}-${month ?? '04'}-30`
}
