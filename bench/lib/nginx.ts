/**
 * nginx as the reference static server: one worker (the proxy is one
 * process too, and the load client needs the machine's other core),
 * `sendfile on`, keep-alive, an access log like the proxy's request log,
 * serving a directory on 127.0.0.1.
 */

import { spawn } from 'node:child_process'
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { get } from './http-client.js'
import { freePort } from './proxy-process.js'

export interface Nginx {
  url: string
  close(): Promise<void>
}

/**
 * Serves `root` (made readable by nginx's unprivileged worker); `dir` holds
 * nginx's config, logs and temp files. `workerConnections` must exceed the
 * clients a bench opens at once.
 */
export async function startNginx(root: string, dir: string, workerConnections = 1024): Promise<Nginx> {
  const port = await freePort()
  await mkdir(join(dir, 'temp'), { recursive: true })
  // mkdtemp makes 0700 directories; the worker runs as an unprivileged user.
  for (const path of [root, dir]) await chmod(path, 0o755)
  const config = `
worker_processes 1;
daemon off;
master_process on;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections ${workerConnections}; }
http {
  default_type application/octet-stream;
  types { text/plain sjson; application/json json; }
  access_log ${join(dir, 'access.log')};
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 30s;
  keepalive_requests 1000000;
  client_body_temp_path ${join(dir, 'temp')};
  proxy_temp_path ${join(dir, 'temp')};
  fastcgi_temp_path ${join(dir, 'temp')};
  uwsgi_temp_path ${join(dir, 'temp')};
  scgi_temp_path ${join(dir, 'temp')};
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`
  const configPath = join(dir, 'nginx.conf')
  await writeFile(configPath, config)
  const child = spawn('nginx', ['-c', configPath, '-p', dir], { stdio: ['ignore', 'ignore', 'inherit'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const url = `http://127.0.0.1:${port}`
  for (let tries = 0; ; tries++) {
    if (await get(`${url}/`).then(() => true, () => false)) break
    if (child.exitCode !== null || tries > 100) throw new Error(`nginx did not start on ${url}; see ${join(dir, 'error.log')}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return {
    url,
    async close() {
      child.kill('SIGQUIT')
      await exited
    },
  }
}
