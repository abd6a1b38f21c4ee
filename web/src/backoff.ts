/**
 * Reconnect delays: exponential backoff with full jitter, as the Python client's.
 *
 * Full jitter (a uniform draw between zero and the exponential ceiling) spreads the reconnects of
 * many clients dropped at the same moment (API Gateway limits new connections per second per
 * account). The first ceiling is small so that the first attempt comes almost at once, and the cap
 * is small so that a client is back within seconds of the server returning.
 */

export const DEFAULT_INITIAL_DELAY_MS = 250;
export const DEFAULT_MAX_DELAY_MS = 2000;

export class Backoff {
  #attempt = 0;

  constructor(
    readonly initialMs: number = DEFAULT_INITIAL_DELAY_MS,
    readonly capMs: number = DEFAULT_MAX_DELAY_MS,
    readonly random: () => number = Math.random,
  ) {
    if (!(initialMs > 0)) throw new RangeError(`initial delay must be > 0 ms, got ${initialMs}`);
    if (!(capMs >= initialMs)) {
      throw new RangeError(`maximum delay (${capMs} ms) must be at least the initial delay`);
    }
  }

  /** The largest delay attempt `attempt` (0-based) can draw. */
  ceiling(attempt: number): number {
    return Math.min(this.capMs, this.initialMs * 2 ** Math.min(attempt, 64));
  }

  /** The next delay: `uniform(0, ceiling(n))` for the n-th call since the last `reset()`. */
  next(): number {
    const delay = this.random() * this.ceiling(this.#attempt);
    this.#attempt += 1;
    return delay;
  }

  reset(): void {
    this.#attempt = 0;
  }
}
