/** Errors the ledger raises on purpose; the API maps each code to an HTTP status. */
export type LedgerErrorCode = 'invalid' | 'not_found' | 'conflict' | 'limit' | 'backpressure' | 'unprocessable';

export class LedgerError extends Error {
  constructor(
    readonly code: LedgerErrorCode,
    readonly field: string | null,
    message: string,
  ) {
    super(message);
    this.name = 'LedgerError';
  }
}
