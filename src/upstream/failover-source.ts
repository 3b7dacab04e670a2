/**
 * A mirror's upstreams as one `UpstreamSource`: several member sources tried
 * in the configured order. A member that fails (refused, timed out, 5xx, 429,
 * a body cut mid-transfer, metadata that does not verify or parse) is put in
 * cool-down and the next one is used, for metadata and files alike; a member
 * that answers 4xx for a file is skipped for that request only (a mirror can
 * lack one file and still be healthy). A fill broken on one member resumes
 * from its offset on the next, since the fill asks this source again. When
 * every member is cooling down they are still tried, soonest-ready first:
 * a mirror is never left without an upstream to ask.
 */

import { UpstreamError } from './upstream-client.js'
import { UpstreamPathError, type FileResponse, type UpstreamHealth, type UpstreamSource } from './upstream-source.js'

export interface FailoverSourceOptions {
  /** At least one; tried in this order. */
  members: UpstreamSource[]
  /** Milliseconds a failed member is skipped. */
  cooldownMs: number
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number
  /** Told when a member goes into cool-down, for the log. */
  onCooldown?: (upstream: string, error: Error, until: number) => void
}

interface Member {
  source: UpstreamSource
  coolingUntil: number
  lastError: string | null
  lastErrorAt: number | null
}

export function createFailoverSource(options: FailoverSourceOptions): UpstreamSource {
  const { cooldownMs } = options
  const now = options.now ?? Date.now
  if (options.members.length === 0) throw new Error('a failover source needs at least one upstream')
  const members: Member[] = options.members.map((source) => ({ source, coolingUntil: 0, lastError: null, lastErrorAt: null }))

  /** Members not cooling down in configured order, then the cooling ones as a last resort, soonest-ready first. */
  function candidates(): Member[] {
    const at = now()
    const ready = members.filter((member) => member.coolingUntil <= at)
    const cooling = members.filter((member) => member.coolingUntil > at).sort((a, b) => a.coolingUntil - b.coolingUntil)
    return [...ready, ...cooling]
  }

  /** Records a member's failure; a 4xx (but 429) says nothing of its health, so it does not cool the member down. */
  function failed(member: Member, error: Error): void {
    const at = now()
    member.lastError = error.message
    member.lastErrorAt = at
    const clientError = error instanceof UpstreamError && error.status !== undefined && error.status >= 400 && error.status < 500 && error.status !== 429
    if (clientError) return
    member.coolingUntil = at + cooldownMs
    options.onCooldown?.(member.source.describe(), error, member.coolingUntil)
  }

  /** Whether another member might do better: not for a path outside the root (every member refuses it) nor an abort. */
  const memberFault = (error: unknown): error is Error =>
    error instanceof Error && !(error instanceof UpstreamPathError) && error.name !== 'AbortError'

  async function withOneMember<T>(task: (member: UpstreamSource) => Promise<T>): Promise<T> {
    let lastError: unknown
    for (const member of candidates()) {
      try {
        return await task(member.source)
      } catch (error) {
        if (!memberFault(error)) throw error
        failed(member, error)
        lastError = error
      }
    }
    throw lastError
  }

  /** A body that breaks after the response was handed on puts its member in cool-down, so the resumed fill asks the next. */
  function watch(member: Member, response: FileResponse): FileResponse {
    response.body.once('error', (error) => {
      if (memberFault(error)) failed(member, error)
    })
    return response
  }

  return {
    getDocument: (relPath, validators) => withOneMember((member) => member.getDocument(relPath, validators)),
    async openFile(relPath, fileOptions) {
      const order = candidates()
      let lastError: unknown
      for (const [position, member] of order.entries()) {
        let response: FileResponse
        try {
          response = await member.source.openFile(relPath, fileOptions)
        } catch (error) {
          if (!memberFault(error)) throw error
          failed(member, error)
          lastError = error
          continue
        }
        if (response.status >= 400) failed(member, new UpstreamError(response.url, `HTTP ${response.status}`, response.status))
        // The last member's answer goes to the fill as it is, which reports (and retries) an error status as ever.
        if (response.status < 400 || position === order.length - 1) return watch(member, response)
        response.body.destroy()
      }
      throw lastError
    },
    pathProblem: (relPath) => members.map((member) => member.source.pathProblem(relPath)).find((problem) => problem !== undefined),
    describe: (relPath) => members.map((member) => member.source.describe(relPath)).join(', '),
    withOneMember,
    health(): UpstreamHealth[] {
      const at = now()
      return members.map((member) => ({
        url: member.source.describe(),
        state: member.coolingUntil > at ? 'cooling' : 'ok',
        coolingUntil: member.coolingUntil > at ? new Date(member.coolingUntil).toISOString() : null,
        lastError: member.lastError,
        lastErrorAt: member.lastErrorAt === null ? null : new Date(member.lastErrorAt).toISOString(),
      }))
    },
  }
}
