/**
 * `sstream-proxy export DIR [--mirror NAME] [--dry-run] [--json]`: writes a
 * mirror's published selection under DIR as a static SimpleStreams tree signed
 * with the proxy's key, for any web server to serve or a disk to carry to an
 * air-gapped site. Files the store lacks are fetched first by a prefetch pass
 * of the mirror; an export with any of them still missing writes nothing.
 * Progress goes to stderr, the summary to stdout.
 */

import { resolve } from 'node:path'
import { exportTree, type ExportSummary } from '../../export/export-tree.js'
import { ExportError } from '../../export/export-paths.js'
import type { Mirror } from '../../mirror/mirror.js'
import type { PassOutcome } from '../../prefetch/prefetcher.js'
import { formatBytes, showProgress } from '../../prefetch/progress-display.js'
import type { ProxyCore } from '../../runtime.js'
import { PROGRAM, UsageError, type Command, type CommandContext } from '../command.js'
import { openCommandCore } from './command-core.js'

export const exportCommand: Command = {
  name: 'export',
  summary: "write a mirror's selection as a static SimpleStreams tree signed with the proxy's key",
  usage: 'export DIR [--mirror NAME] [--dry-run] [--json] [--copy] [--verify]',
  arguments: [{ name: 'DIR', description: 'the folder to write (created when missing); a later export into it updates it' }],
  options: {
    mirror: { type: 'string', short: 'm', valueName: 'NAME', description: 'the mirror to export (required when there are several)' },
    'dry-run': { type: 'boolean', short: 'n', description: 'print what would be fetched, written and removed; change nothing' },
    json: { type: 'boolean', description: 'print the summary as JSON' },
    copy: { type: 'boolean', description: "copy every file, even where a hard link to the store's file would do" },
    verify: { type: 'boolean', description: 'hash the files already in DIR instead of trusting their size and the export record; rewrite any that do not match' },
  },
  async run(args, context) {
    const dir = resolve(context.cwd, args.positionals?.[0] ?? '')
    const json = args.values.json === true
    const dryRun = args.values['dry-run'] === true
    const { core } = await openCommandCore(context)
    try {
      const mirror = chooseMirror(core, args.values.mirror as string | undefined)
      const fill = dryRun ? undefined : await fillStore(core, mirror, context, json)
      const publication = dryRun ? await mirror.refresh() : mirror.current()
      if (publication === undefined) {
        context.stderr.write(`${PROGRAM} export: mirror ${mirror.config.name}: ${mirror.metadataStatus().metadataError ?? 'no metadata'}\n`)
        return 1
      }
      let stop: (() => void) | undefined
      const summary = await exportTree({
        dir,
        mirror: mirror.config.name,
        publication,
        keyring: core.signingKey.publicBinary,
        source: { root: core.config.dataDir, localPath: core.store.objects.localPath, openStored: core.store.openStored },
        isStored: (sha256) => core.store.index.get(sha256) !== undefined,
        copy: args.values.copy === true,
        verify: args.values.verify === true,
        dryRun,
        onStart: (progress) => {
          if (!json) stop = showProgress(`${mirror.config.name} export`, progress, { out: context.stderr })
        },
      }).finally(() => stop?.())
      context.stdout.write(json ? `${JSON.stringify({ fill: fill ?? null, export: summary }, null, 2)}\n` : formatSummary(summary))
      // With publish: "cached" a failed fetch still leaves a consistent export (of the older versions): written, but reported.
      return fill?.result === 'failed' ? 1 : 0
    } catch (error) {
      if (!(error instanceof ExportError)) throw error
      context.stderr.write(`${PROGRAM} export: ${error.message}\n`)
      return 1
    } finally {
      await core.close()
    }
  },
}

function chooseMirror(core: ProxyCore, name: string | undefined): Mirror {
  const names = core.mirrors.map((mirror) => mirror.config.name).join(', ')
  const mirror = name === undefined ? (core.mirrors.length === 1 ? core.mirrors[0] : undefined) : core.mirrors.find((candidate) => candidate.config.name === name)
  if (mirror === undefined) {
    throw new UsageError(name === undefined ? `export: there are several mirrors (${names}): choose one with --mirror NAME` : `export: no mirror named ${name} (mirrors: ${names})`)
  }
  if (mirror.config.metadata === 'upstream') {
    throw new UsageError(`export: mirror ${mirror.config.name} serves upstream's own metadata ("metadata": "upstream"), which names every upstream file; export writes the selection signed with the proxy's key and needs "metadata": "filtered"`)
  }
  return mirror
}

/** A prefetch pass of the mirror, so that the export finds every file stored; its failures surface as the export's list of missing files. */
async function fillStore(core: ProxyCore, mirror: Mirror, context: CommandContext, json: boolean): Promise<PassOutcome> {
  const name = mirror.config.name
  let stop: (() => void) | undefined
  const outcome = await core.prefetcher
    .run(name, {
      gc: false,
      onPass: (pass) => {
        if (!json && pass.targets.length > 0) stop = showProgress(`${name} fetch`, () => pass.progress(), { out: context.stderr })
      },
    })
    .finally(() => stop?.())
  for (const error of outcome.counts.errors) context.stderr.write(`${PROGRAM} export: fetch failed: ${error}\n`)
  if (outcome.result === 'skipped') context.stderr.write(`${PROGRAM} export: another process is running a pass of ${name}; exporting what is stored\n`)
  // A file stored just now may complete a version that `publish: "cached"` then publishes.
  await mirror.republished()
  return outcome
}

function formatSummary(summary: ExportSummary): string {
  const count = ({ files, bytes }: { files: number; bytes: number }) => `${files} files (${formatBytes(bytes)})`
  const lines: string[] = []
  if (summary.dryRun) {
    if (summary.missing.files > 0) lines.push(`would fetch into the store first: ${count(summary.missing)}`)
    for (const path of summary.documents) lines.push(`would write ${path}`)
    for (const path of summary.removed.paths) lines.push(`would remove ${path}`)
    for (const path of summary.replaced) lines.push(`would replace ${path} (does not match the export record)`)
    const placed = { files: summary.linked.files + summary.copied.files, bytes: summary.linked.bytes + summary.copied.bytes }
    lines.push(
      `${summary.mirror} to ${summary.dir}: would place ${count(placed)}, re-use ${count(summary.reused)}, write ${summary.documents.length} metadata files, remove ${count(summary.removed)}`,
    )
    return `${lines.join('\n')}\n`
  }
  for (const path of summary.replaced) lines.push(`replaced ${path}: it no longer matched the export record`)
  for (const path of summary.adopted) lines.push(`kept ${path}: not written by an export, but matches`)
  lines.push(
    `${summary.mirror} to ${summary.dir}: ${count(summary)}; linked ${count(summary.linked)}, copied ${count(summary.copied)}, re-used ${count(summary.reused)}; ` +
      `wrote ${summary.documents.length} metadata files; removed ${count(summary.removed)}; ${summary.seconds} s`,
  )
  return `${lines.join('\n')}\n`
}
