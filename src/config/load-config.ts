/**
 * Finds and loads the configuration: `--config FILE`, else `$SSTREAM_PROXY_CONFIG`,
 * else `./config.json` if it exists, else the built-in default. Every failure is a
 * `ConfigError` with a one-line message naming the file and the key.
 */

import { constants } from 'node:fs'
import { access, readFile, stat } from 'node:fs/promises'
import { dirname, isAbsolute, relative, resolve } from 'node:path'
import type { Config } from './types.js'
import { BUILT_IN_CONFIG, STOCK_KEYRING_PACKAGE } from './defaults.js'
import { ConfigError, validateConfig } from './validate-config.js'
import { readTlsFiles } from './tls-files.js'
import { readFleetSecret } from '../fleet/fleet-secret.js'
import { readCaFile } from './ca-file.js'

export { ConfigError } from './validate-config.js'

export interface LoadConfigOptions {
  /** The `--config` flag, relative to `cwd`. */
  configPath?: string
  /** Defaults to `process.env`; read for `SSTREAM_PROXY_CONFIG`. */
  env?: NodeJS.ProcessEnv
  /** Defaults to `process.cwd()`; where `./config.json` is looked for and the built-in default's paths resolve. */
  cwd?: string
}

export const CONFIG_ENV = 'SSTREAM_PROXY_CONFIG'
export const BUILT_IN_SOURCE = 'built-in default'

/** Where the configuration comes from: a file and what named it, or the built-in default. */
export type ConfigLocation =
  | { kind: 'file'; path: string; namedBy: '--config' | `$${typeof CONFIG_ENV}` | './config.json' }
  | { kind: 'built-in' }

/** Resolves the configuration's location in the documented order, without reading it. */
export async function locateConfig(options: LoadConfigOptions = {}): Promise<ConfigLocation> {
  const cwd = options.cwd ?? process.cwd()
  if (options.configPath !== undefined) {
    return { kind: 'file', path: resolve(cwd, options.configPath), namedBy: '--config' }
  }
  const fromEnv = (options.env ?? process.env)[CONFIG_ENV]
  if (fromEnv !== undefined && fromEnv !== '') {
    return { kind: 'file', path: resolve(cwd, fromEnv), namedBy: `$${CONFIG_ENV}` }
  }
  const local = resolve(cwd, 'config.json')
  if (await exists(local)) {
    return { kind: 'file', path: local, namedBy: './config.json' }
  }
  return { kind: 'built-in' }
}

/** Loads and validates the configuration, throwing `ConfigError` on any problem. */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<Config> {
  const cwd = options.cwd ?? process.cwd()
  const location = await locateConfig(options)
  if (location.kind === 'built-in') {
    return validateConfig(BUILT_IN_CONFIG, { source: BUILT_IN_SOURCE, baseDir: cwd })
  }
  const source = displayPath(location.path, cwd)
  let text: string
  try {
    text = await readFile(location.path, 'utf8')
  } catch (error) {
    throw new ConfigError(source, '', `cannot read the configuration file (named by ${location.namedBy}): ${describeFsError(error)}`)
  }
  const config = validateConfig(parseJson(text, source), { source, baseDir: dirname(location.path) })
  await checkKeyrings(config)
  if (config.listen.tls !== undefined) await readTlsFiles(config.listen.tls, config.source)
  for (const { ca } of config.mirrors) if (ca !== undefined) await readCaFile(ca.path, ca.key, config.source)
  if (config.fleet !== undefined) await readFleetSecret(config.fleet.secretFile, config.source)
  return config
}

/** An explicit keyring must be there now; the stock one may be missing (the server tells how to install it). */
async function checkKeyrings(config: Config): Promise<void> {
  for (const [index, mirror] of config.mirrors.entries()) {
    if (mirror.keyringIsDefault) {
      continue
    }
    const key = `mirrors[${index}].keyring`
    try {
      if (!(await stat(mirror.keyring)).isFile()) {
        throw new ConfigError(config.source, key, `${mirror.keyring} is not a file`)
      }
      await access(mirror.keyring, constants.R_OK)
    } catch (error) {
      if (error instanceof ConfigError) {
        throw error
      }
      const hint = `set it to an OpenPGP public keyring, or leave it out to use the stock one from the ${STOCK_KEYRING_PACKAGE} package`
      throw new ConfigError(config.source, key, `cannot read ${mirror.keyring}: ${describeFsError(error)} (${hint})`)
    }
  }
}

function parseJson(file: string, source: string): unknown {
  // Editors on some systems save a byte-order mark, which JSON.parse rejects.
  const text = file.replace(/^\uFEFF/, '')
  try {
    return JSON.parse(text)
  } catch (error) {
    const message = (error as Error).message
    // V8 reports "... in JSON at position N" (newer versions add "(line L column C)");
    // operators edit by line, so turn the offset into a line and column.
    const position = /at position (\d+)/.exec(message)
    const offset = position === null ? text.length : Number(position[1])
    const before = text.slice(0, offset).split('\n')
    const line = before.length
    const column = (before.at(-1)?.length ?? 0) + 1
    const reason = message.replace(/ (in|after) JSON at position \d+.*$/s, '').replace(/\s*\(line \d+ column \d+\)$/, '')
    throw new ConfigError(source, '', `invalid JSON at line ${line}, column ${column}: ${reason}`)
  }
}

/** The path as the operator would write it: relative when under `cwd`, absolute otherwise. */
function displayPath(path: string, cwd: string): string {
  const fromCwd = relative(cwd, path)
  return fromCwd === '' || fromCwd.startsWith('..') || isAbsolute(fromCwd) ? path : fromCwd
}

function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return 'no such file'
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied'
  if (code === 'EISDIR') return 'is a directory'
  return (error as Error).message
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}
