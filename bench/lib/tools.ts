/**
 * The Debian tools the suite compares against (nginx), loads with (wrk) and
 * stores in (Ceph's RADOS Gateway, for the S3 store): installed with apt-get
 * when missing, as the benchmark issue asks.
 */

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Each tool: the commands that prove it is installed, and the packages that install it. */
const TOOLS = {
  nginx: { commands: ['nginx'], packages: ['nginx'] },
  wrk: { commands: ['wrk'], packages: ['wrk'] },
  // What scripts/ceph-rgw.sh runs; it would install them itself, but slowly and mid-run.
  ceph: { commands: ['ceph-mon', 'ceph-osd', 'radosgw'], packages: ['ceph-mon', 'ceph-osd', 'radosgw'] },
} as const

export type Tool = keyof typeof TOOLS

async function has(command: string): Promise<boolean> {
  return run('sh', ['-c', `command -v ${command} || test -x /usr/sbin/${command} || test -x /usr/bin/${command}`]).then(
    () => true,
    () => false,
  )
}

/** Installs each missing tool's packages; throws a one-line error naming the tool when that fails. */
export async function ensureTools(tools: readonly Tool[]): Promise<void> {
  for (const tool of tools) {
    const { commands, packages } = TOOLS[tool]
    if ((await Promise.all(commands.map(has))).every(Boolean)) continue
    const install = `apt-get install -y --no-install-recommends ${packages.join(' ')}`
    process.stdout.write(`installing ${packages.join(' ')} (${install})\n`)
    try {
      await run('apt-get', ['install', '-y', '--no-install-recommends', ...packages], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
    } catch (error) {
      throw new Error(`${tool} is missing and ${install} failed (run it as root): ${(error as Error).message.split('\n')[0]}`)
    }
  }
}
