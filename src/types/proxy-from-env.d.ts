/** `proxy-from-env` ships no types: the one function the transport uses. */
declare module 'proxy-from-env' {
  /** The proxy URL for `url` from `*_PROXY`/`NO_PROXY` (either case), or "" for none. */
  export function getProxyForUrl(url: string | URL): string
}
