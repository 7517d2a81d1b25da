/**
 * The channel claimers LISTEN on (src/dispatch/notifier.ts); the payload is "<jobType> <count>"
 * (count 0: wake every waiter of the type; "*": wake everyone).
 */
export const JOBS_CHANNEL = 'orch_jobs';
