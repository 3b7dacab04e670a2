/**
 * Credentials in an upstream URL (`https://user:password@host/`) are sent as
 * Basic auth to that upstream and nowhere else: every URL the proxy shows in
 * `/status`, an error, a 503 body or the log goes through `redactUrl` first.
 */

// The userinfo of an absolute URL: after `scheme://`, before the first `@` that precedes any `/`, `?` or `#`.
const USERINFO = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^/?#]*)@/

/**
 * The URL with its password replaced by `***` (`http://user:***@host/`). A
 * user name alone is often a token (`https://TOKEN@host/`), so it is hidden
 * the same way (`https://***@host/`). Text that is not a URL is returned as is.
 */
export function redactUrl(url: string): string {
  return url.replace(USERINFO, (_match, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':')
    return colon === -1 ? `${scheme}***@` : `${scheme}${userinfo.slice(0, colon)}:***@`
  })
}
