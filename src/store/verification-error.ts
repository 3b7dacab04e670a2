/** The file's bytes do not match the signed metadata: retrying the same upstream will not help. */
export class VerificationError extends Error {
  override name = 'VerificationError'
}
