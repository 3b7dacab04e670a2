/**
 * `/status` for a person: the status report as one server-rendered HTML page
 * (no build step, no external asset), readable on a phone, plus the selected
 * versions as a table. A small inline script re-fetches the page every few
 * seconds and swaps the report in place, so the page stays live without a
 * reload and every value is rendered, and escaped, by this module alone.
 */

import type { Publication } from '../mirror/publication.js'
import type { PassRecord } from '../prefetch/pass-history.js'
import type { Store } from '../store/store.js'
import { buildStatusReport, type PrefetchStatus, type StatusDeps, type StatusReport } from './status-report.js'

export interface VersionRow {
  product: string
  /** A short human name from the product's attributes, e.g. `ubuntu noble amd64 ga-24.04`. */
  label: string
  version: string
  files: number
  bytes: number
  cachedFiles: number
  cachedBytes: number
}

export interface StatusPageInput {
  report: StatusReport
  /** The selected versions of a mirror, by mirror name. */
  versions: (mirror: string) => VersionRow[]
  /** For relative times; defaults to now. */
  now?: number
}

/** Seconds between two refreshes of an open page. */
export const REFRESH_SECONDS = 5

/** The page for the current state of the proxy. */
export function statusPage(deps: StatusDeps): string {
  const byName = new Map(deps.mirrors.map((mirror) => [mirror.config.name, mirror]))
  return renderStatusPage({
    report: buildStatusReport(deps),
    versions: (name) => versionRows(byName.get(name)?.current(), deps.store),
  })
}

/**
 * True when the client ranks `text/html` above `application/json` (browsers
 * do); `*\/*`, a missing header and JSON-first clients such as curl get JSON.
 */
export function prefersHtml(accept: string | undefined): boolean {
  if (accept === undefined) return false
  const quality = (type: string) => {
    let best = -1
    for (const range of accept.split(',')) {
      const [media = '', ...params] = range.split(';').map((part) => part.trim().toLowerCase())
      if (media !== type && media !== `${type.split('/')[0]}/*` && media !== '*/*') continue
      const q = params.find((param) => param.startsWith('q='))
      const value = q === undefined ? 1 : Number(q.slice(2))
      // An exact media type outranks a wildcard at the same quality.
      const rank = (Number.isFinite(value) ? value : 0) + (media === type ? 0.0001 : 0)
      best = Math.max(best, rank)
    }
    return best
  }
  const html = quality('text/html')
  return html > 0.0001 && html > quality('application/json')
}

/** One row per selected product version, newest version first within a product. */
export function versionRows(publication: Publication | undefined, store: Pick<Store, 'index'>): VersionRow[] {
  const rows: VersionRow[] = []
  for (const { product, label, version, files } of publication?.versions() ?? []) {
    const row: VersionRow = { product, label, version, files: 0, bytes: 0, cachedFiles: 0, cachedBytes: 0 }
    for (const file of files) {
      row.files++
      row.bytes += file.size
      if (store.index.get(file.sha256) !== undefined) {
        row.cachedFiles++
        row.cachedBytes += file.size
      }
    }
    rows.push(row)
  }
  return rows.sort((a, b) => a.label.localeCompare(b.label) || a.product.localeCompare(b.product) || b.version.localeCompare(a.version))
}

export function renderStatusPage(input: StatusPageInput): string {
  const { report } = input
  const now = input.now ?? Date.now()
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sstream-proxy status</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>sstream-proxy</h1>
  <p class="live" id="live" data-state="live"><span class="dot"></span><span id="live-text">live</span></p>
</header>
${renderReport(report, input.versions, now)}
<footer>Also as <a href="/status" type="application/json" id="json-link">JSON</a> (<code>curl /status</code>) and <a href="/metrics">Prometheus metrics</a>. Refreshes every ${REFRESH_SECONDS} s.</footer>
<script>${script()}</script>
</body>
</html>
`
}

function renderReport(report: StatusReport, versions: StatusPageInput['versions'], now: number): string {
  const { cache } = report
  const requests = cache.hits + cache.misses
  const hitRatio = requests === 0 ? '–' : `${((cache.hits / requests) * 100).toFixed(1)} %`
  return `<main id="report" data-uptime="${report.uptimeSeconds}">
<p class="meta">version ${esc(report.version)} · up ${esc(duration(report.uptimeSeconds))} · configuration loaded at <time datetime="${esc(report.configLoaded)}">${esc(report.configLoaded)}</time> (${esc(ago(report.configLoaded, now))})</p>
<section class="card" id="cache">
  <h2>Cache</h2>
  <dl class="figures">
    ${figure('files', String(cache.files))}
    ${figure('size', bytes(cache.bytes))}
    ${figure('hit ratio', hitRatio, `${cache.hits} hits, ${cache.misses} misses`)}
    ${figure('served', bytes(cache.servedBytes))}
    ${figure('from upstream', bytes(cache.upstreamBytes))}
    ${figure('fetching now', String(cache.activeFills))}
  </dl>
  ${renderBandwidth(report.bandwidth)}
</section>
${report.fleet === undefined ? '' : renderFleet(report.fleet, now)}
${report.mirrors.map((mirror) => renderMirror(mirror, versions(mirror.name), now)).join('\n')}
</main>`
}

/** One line on the limits, only when there are any. */
function renderBandwidth(bandwidth: StatusReport['bandwidth']): string {
  const parts: string[] = []
  if (bandwidth.upstreamRate !== null) parts.push(`upstream at most ${esc(bytes(bandwidth.upstreamRate))}/s`)
  if (bandwidth.prefetchRate !== null) parts.push(`prefetch at most ${esc(bytes(bandwidth.prefetchRate))}/s`)
  if (bandwidth.prefetchWindows.length > 0) {
    const state = bandwidth.prefetchPaused ? 'paused until a window opens' : bandwidth.prefetchWindowOpen ? 'inside a window' : 'outside its windows'
    parts.push(`prefetch windows ${esc(bandwidth.prefetchWindows.join(', '))} (${state})`)
  }
  return parts.length === 0 ? '' : `<p class="small" id="bandwidth">Bandwidth: ${parts.join(' · ')}.</p>`
}

type FleetReport = NonNullable<StatusReport['fleet']>

/** This replica, the live ones (a disagreeing one in red), who holds each lease, and the fills running fleet-wide. */
function renderFleet(fleet: FleetReport, now: number): string {
  const replicas = fleet.replicas.map((replica) => {
    const state = replica.self ? ['ok', 'this replica'] : replica.disagrees === null ? ['ok', 'agrees'] : ['bad', 'disagrees']
    return `<tr data-replica="${esc(replica.id)}">
      <td><a href="${esc(replica.advertise)}status">${esc(replica.advertise)}</a><br><code class="product">${esc(replica.id)}</code></td>
      <td>${esc(ago(replica.startedAt, now))}</td>
      <td>${esc(replica.version)}</td>
      <td><span class="badge ${state[0]}">${esc(state[1] as string)}</span>${replica.disagrees === null ? '' : `<br><span class="small">${esc(replica.disagrees)}</span>`}</td>
    </tr>`
  })
  const leases = fleet.leases.map(
    (lease) => `<tr data-lease="${esc(lease.name)}">
      <td>${lease.mirror === null ? 'garbage collection' : `prefetch of <code>${esc(lease.mirror)}</code>`}</td>
      <td>${lease.holderAdvertise === null ? '<span class="small">nobody</span>' : `${esc(lease.holderAdvertise)}${lease.heldHere ? ' <span class="badge busy">this replica</span>' : ''}`}</td>
    </tr>`,
  )
  const fills = fleet.fills.map(
    (fill) => `<tr data-sha256="${esc(fill.sha256)}">
      <td><code>${esc(fill.path)}</code></td>
      <td class="num">${esc(bytes(fill.size))}</td>
      <td>${esc(fill.owner)}</td>
      <td>${fill.since === null ? '' : esc(ago(fill.since, now))}</td>
    </tr>`,
  )
  const disagreeing = fleet.replicas.filter((replica) => replica.disagrees !== null).length
  return `<section class="card" id="fleet">
  <h2>Fleet <span class="badge ${disagreeing > 0 ? 'bad' : 'ok'}">${fleet.replicas.length} replica${fleet.replicas.length === 1 ? '' : 's'}${disagreeing > 0 ? `, ${disagreeing} disagreeing` : ''}</span></h2>
  <p class="paths">This replica: <code>${esc(fleet.replica.advertise)}</code> <code class="product">${esc(fleet.replica.id)}</code>${fleet.checkedAt === null ? '' : ` · bucket read ${esc(ago(fleet.checkedAt, now))}`}</p>
  ${fleet.error === null ? '' : `<p class="error"><strong>Cannot read the fleet's records:</strong> ${esc(fleet.error)}</p>`}
  <div class="scroll"><table class="replicas">
    <caption>Live replicas</caption>
    <thead><tr><th>replica</th><th>started</th><th>version</th><th>state</th></tr></thead>
    <tbody>${replicas.join('')}</tbody>
  </table></div>
  <div class="scroll"><table class="leases">
    <caption>Leases</caption>
    <thead><tr><th>for</th><th>held by</th></tr></thead>
    <tbody>${leases.join('')}</tbody>
  </table></div>
  ${fills.length === 0 ? '<p class="small">No fill running in the fleet.</p>' : `<div class="scroll"><table class="fills">
    <caption>Fills running fleet-wide</caption>
    <thead><tr><th>path</th><th class="num">size</th><th>filled by</th><th>since</th></tr></thead>
    <tbody>${fills.join('')}</tbody>
  </table></div>`}
</section>`
}

type MirrorReport = StatusReport['mirrors'][number]

function renderMirror(mirror: MirrorReport, rows: VersionRow[], now: number): string {
  const health =
    mirror.upstreamReachable === null ? ['unknown', 'not checked yet'] : mirror.upstreamReachable ? ['ok', 'upstream reachable'] : ['bad', 'upstream unreachable']
  const { selection } = mirror
  return `<section class="card mirror" data-mirror="${esc(mirror.name)}">
  <h2>${esc(mirror.name)} <span class="badge ${health[0]}">${esc(health[1] as string)}</span></h2>
  ${renderUpstreams(mirror, now)}
  <p>Metadata checked ${mirror.metadataUpdated === null ? 'never' : `<time datetime="${esc(mirror.metadataUpdated)}">${esc(ago(mirror.metadataUpdated, now))}</time>`}.</p>
  ${mirror.metadataError === null ? '' : `<p class="error"><strong>Last error:</strong> ${esc(mirror.metadataError)}</p>`}
  ${mirror.metadataWarnings.map((warning) => `<p class="error"><strong>Refused item:</strong> ${esc(warning)}</p>`).join('\n  ')}
  ${renderMaasProblems(mirror.maasProblems)}
  <dl class="figures">
    ${figure('products', String(selection.products))}
    ${figure('versions', String(selection.versions))}
    ${figure('files cached', `${selection.cachedFiles} / ${selection.files}`)}
    ${figure('bytes cached', `${bytes(selection.cachedBytes)} / ${bytes(selection.bytes)}`)}
  </dl>
  ${renderPrefetch(mirror.prefetch, now)}
  ${renderVersions(rows)}
</section>`
}

/** The mirror's path and its upstream; with several (failover), each in the order tried with its state and last error. */
function renderUpstreams(mirror: MirrorReport, now: number): string {
  const link = (url: string) => `<a href="${esc(url)}">${esc(url)}</a>`
  if (mirror.upstreams.length < 2) return `<p class="paths"><code>${esc(mirror.path)}</code> ← ${link(mirror.upstream)}</p>`
  const rows = mirror.upstreams.map((upstream) => {
    const state =
      upstream.coolingUntil === null
        ? '<span class="badge ok">ok</span>'
        : `<span class="badge bad">cooling down until <time datetime="${esc(upstream.coolingUntil)}">${esc(upstream.coolingUntil)}</time></span>`
    const lastError =
      upstream.lastError === null || upstream.lastErrorAt === null
        ? ''
        : `<br><span class="small">last error ${esc(ago(upstream.lastErrorAt, now))}: ${esc(upstream.lastError)}</span>`
    return `<li data-state="${esc(upstream.state)}">${link(upstream.url)} ${state}${lastError}</li>`
  })
  return `<p class="paths"><code>${esc(mirror.path)}</code> ← ${mirror.upstreams.length} upstreams, tried in order:</p>
  <ol class="upstreams">${rows.join('')}</ol>`
}

/** Warnings: what MAAS 3.8 would reject in the metadata this mirror serves (one rejected file fails MAAS's whole import). */
function renderMaasProblems(problems: readonly string[]): string {
  if (problems.length === 0) return ''
  return `<div class="warning maas-problems"><strong>MAAS 3.8 would reject this mirror's metadata</strong> (${problems.length} problem${problems.length === 1 ? '' : 's'}; one rejected products file fails the whole import):
    <ul>${problems.map((problem) => `<li>${esc(problem)}</li>`).join('')}</ul></div>`
}

function renderPrefetch(prefetch: PrefetchStatus & { passes?: PassRecord[] }, now: number): string {
  const running = prefetch.state === 'running' || prefetch.state === 'paused'
  const fraction = prefetch.bytesTotal > 0 ? prefetch.bytesDone / prefetch.bytesTotal : prefetch.filesTotal > 0 ? prefetch.filesDone / prefetch.filesTotal : running ? 0 : 1
  const percent = Math.max(0, Math.min(100, fraction * 100))
  const last =
    prefetch.lastFinished !== null
      ? `Last pass finished ${esc(ago(prefetch.lastFinished, now))}${prefetch.lastResult === null ? '' : `: ${esc(prefetch.lastResult)}`}.`
      : prefetch.lastStarted !== null
        ? `Started ${esc(ago(prefetch.lastStarted, now))}.`
        : 'No pass yet.'
  // The running pass is the bar above; its history row is only complete once it ends.
  const passes = (prefetch.passes ?? []).filter((pass) => pass.result !== 'running')
  return `<div class="prefetch" data-state="${esc(prefetch.state)}">
    <h3>Prefetch <span class="badge ${running ? 'busy' : prefetch.state === 'disabled' ? 'unknown' : 'ok'}">${esc(prefetch.state)}</span></h3>
    ${prefetch.filesTotal === 0 && !running ? '' : `<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${percent.toFixed(0)}"><span style="width:${percent.toFixed(1)}%"></span></div>
    <p class="small">${prefetch.filesDone} / ${prefetch.filesTotal} files · ${esc(bytes(prefetch.bytesDone))} / ${esc(bytes(prefetch.bytesTotal))} · ${percent.toFixed(0)} %</p>`}
    <p class="small">${last}</p>
    ${prefetch.errors.length === 0 ? '' : `<ul class="error">${prefetch.errors.map((error) => `<li>${esc(error)}</li>`).join('')}</ul>`}
    ${passes.length === 0 ? '' : renderPasses(passes, now)}
  </div>`
}

/** The last passes, newest first, as the prefetcher reports them. */
function renderPasses(passes: PassRecord[], now: number): string {
  const rows = passes.map((pass) => {
    const state = pass.result === 'ok' ? 'ok' : pass.result === 'running' ? 'busy' : 'bad'
    return `<tr>
      <td>${esc(ago(pass.startedAt, now))}</td>
      <td>${pass.finishedAt === null ? '' : esc(duration((Date.parse(pass.finishedAt) - Date.parse(pass.startedAt)) / 1000))}</td>
      <td><span class="badge ${state}">${esc(pass.result)}</span></td>
      <td class="num">${pass.filesDone} / ${pass.filesTotal}</td>
      <td class="num">${esc(bytes(pass.bytesDone))}</td>
      <td class="num"${pass.errors.length === 0 ? '' : ` title="${esc(pass.errors.slice(0, 5).join('\n'))}"`}>${pass.errors.length}</td>
    </tr>`
  })
  return `<div class="scroll"><table class="passes">
    <caption>Last passes</caption>
    <thead><tr><th>started</th><th>took</th><th>result</th><th class="num">files</th><th class="num">bytes</th><th class="num">errors</th></tr></thead>
    <tbody>${rows.join('')}</tbody>
  </table></div>`
}

function renderVersions(rows: VersionRow[]): string {
  if (rows.length === 0) return '<p class="small">Nothing selected yet: the metadata has not been read.</p>'
  const body = rows.map((row) => {
    const state = row.cachedFiles === row.files ? ['ok', 'cached'] : row.cachedFiles === 0 ? ['missing', 'not cached'] : ['busy', 'partly cached']
    return `<tr data-product="${esc(row.product)}" data-version="${esc(row.version)}">
      <td><span class="label">${esc(row.label)}</span><code class="product">${esc(row.product)}</code></td>
      <td><code>${esc(row.version)}</code></td>
      <td class="num">${row.cachedFiles === row.files ? row.files : `${row.cachedFiles} / ${row.files}`}</td>
      <td class="num">${esc(bytes(row.bytes))}</td>
      <td><span class="badge ${state[0]}">${esc(state[1] as string)}</span></td>
    </tr>`
  })
  return `<div class="scroll"><table class="versions">
    <caption>Selected versions</caption>
    <thead><tr><th>product</th><th>version</th><th class="num">files</th><th class="num">size</th><th>cache</th></tr></thead>
    <tbody>${body.join('')}</tbody>
  </table></div>`
}

function figure(name: string, value: string, title?: string): string {
  return `<div${title === undefined ? '' : ` title="${esc(title)}"`}><dt>${esc(name)}</dt><dd>${esc(value)}</dd></div>`
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** For text and for double- or single-quoted attribute values alike. */
export function esc(text: string): string {
  return text.replace(/[&<>"']/g, (char) => ESCAPES[char] as string)
}

export function bytes(count: number): string {
  if (count < 1024) return `${count} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let value = count
  let unit = -1
  do {
    value /= 1024
    unit++
  } while (value >= 1024 && unit < units.length - 1)
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`
}

function duration(seconds: number): string {
  if (seconds < 60) return `${Math.max(0, Math.round(seconds))} s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`
  return `${Math.floor(seconds / 86_400)} d ${Math.floor((seconds % 86_400) / 3600)} h`
}

function ago(iso: string, now: number): string {
  const at = Date.parse(iso)
  if (Number.isNaN(at)) return iso
  return `${duration((now - at) / 1000)} ago`
}

/**
 * Re-fetches this page as HTML and swaps `#report`: one renderer for the
 * first paint and every update. Paused while the tab is hidden.
 */
function script(): string {
  return `(() => {
  const live = document.getElementById('live');
  const text = document.getElementById('live-text');
  const refresh = async () => {
    if (!document.hidden) {
      try {
        const response = await fetch(location.pathname, { headers: { accept: 'text/html' }, cache: 'no-store' });
        if (!response.ok) throw new Error('HTTP ' + response.status);
        const next = new DOMParser().parseFromString(await response.text(), 'text/html').getElementById('report');
        const current = document.getElementById('report');
        if (next === null || current === null) throw new Error('no report in the page');
        current.replaceWith(document.adoptNode(next));
        live.dataset.state = 'live';
        text.textContent = 'live · ' + new Date().toLocaleTimeString();
      } catch (error) {
        live.dataset.state = 'offline';
        text.textContent = 'offline: ' + error.message;
      }
    }
    setTimeout(refresh, ${REFRESH_SECONDS * 1000});
  };
  setTimeout(refresh, ${REFRESH_SECONDS * 1000});
})();`
}

const STYLE = `
:root { color-scheme: light dark; --bg: #f6f7f9; --card: #fff; --text: #1d2330; --muted: #667085; --line: #e3e6eb;
  --ok: #1a7f37; --ok-bg: #dcf5e3; --bad: #b42318; --bad-bg: #fde4e1; --busy: #9a6700; --busy-bg: #fff1c2; --accent: #e95420; }
@media (prefers-color-scheme: dark) { :root { --bg: #12151b; --card: #1b2029; --text: #e6e9ef; --muted: #98a2b3; --line: #2c3340;
  --ok: #6fdd8b; --ok-bg: #133a21; --bad: #ff8a80; --bad-bg: #45181a; --busy: #f5c451; --busy-bg: #3d3210; } }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 72rem; padding: 1rem; background: var(--bg); color: var(--text);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Ubuntu, sans-serif; }
header { display: flex; align-items: baseline; justify-content: space-between; gap: 1rem; border-bottom: 3px solid var(--accent); margin-bottom: .5rem; }
h1 { font-size: 1.4rem; margin: .2rem 0 .4rem; }
h2 { font-size: 1.15rem; margin: 0 0 .6rem; display: flex; flex-wrap: wrap; align-items: center; gap: .5rem; }
h3 { font-size: 1rem; margin: 1rem 0 .4rem; display: flex; align-items: center; gap: .5rem; }
a { color: inherit; }
code { font: .85em ui-monospace, "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }
.meta, .small, footer, .live { color: var(--muted); font-size: .85rem; }
.live { margin: 0; display: flex; align-items: center; gap: .4rem; }
.dot { width: .6rem; height: .6rem; border-radius: 50%; background: var(--ok); }
.live[data-state=offline] .dot { background: var(--bad); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: .6rem; padding: 1rem; margin: 1rem 0; }
.paths { margin: 0 0 .4rem; overflow-wrap: anywhere; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(10.5rem, 1fr)); gap: .6rem; margin: .6rem 0; }
.figures div { border-left: 3px solid var(--line); padding-left: .6rem; }
dt { color: var(--muted); font-size: .8rem; }
dd { margin: 0; font-size: 1.1rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.badge { font-size: .75rem; font-weight: 600; padding: .1rem .5rem; border-radius: 1rem; white-space: nowrap; background: var(--line); color: var(--muted); }
.badge.ok { background: var(--ok-bg); color: var(--ok); }
.badge.bad, .badge.missing { background: var(--bad-bg); color: var(--bad); }
.badge.busy { background: var(--busy-bg); color: var(--busy); }
.error { background: var(--bad-bg); color: var(--bad); padding: .5rem .7rem; border-radius: .4rem; overflow-wrap: anywhere; }
ul.error { padding-left: 1.6rem; }
.warning { background: var(--busy-bg); color: var(--busy); padding: .5rem .7rem; border-radius: .4rem; overflow-wrap: anywhere; }
.warning ul { padding-left: 1.6rem; margin: .3rem 0 0; }
.bar { height: .7rem; background: var(--line); border-radius: 1rem; overflow: hidden; }
.bar span { display: block; height: 100%; background: var(--accent); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin-top: .8rem; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: .3rem; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 500; font-size: .8rem; }
.num { text-align: right; white-space: nowrap; }
.label { display: block; font-weight: 500; }
.versions td:nth-child(2) code { white-space: nowrap; overflow-wrap: normal; }
.product { color: var(--muted); font-size: .75rem; }
@media (max-width: 40rem) {
  body { padding: .5rem; }
  .card { padding: .75rem; }
  .product { display: none; }
  th, td { padding: .35rem .3rem; }
}
`
