/**
 * Runs one pass at a time: a kick during a pass runs one more pass after it (never two at once, never a lost
 * change); a failed pass is reported and tried again after `retryMs`.
 */
export class SerialPasses {
  readonly #pass: (signal: AbortSignal) => Promise<void>;
  readonly #onError: (err: unknown) => void;
  readonly #retryMs: number;
  #running: Promise<void> | undefined;
  #again = false;

  constructor(pass: (signal: AbortSignal) => Promise<void>, onError: (err: unknown) => void, retryMs = 5000) {
    this.#pass = pass;
    this.#onError = onError;
    this.#retryMs = retryMs;
  }

  kick(signal: AbortSignal): void {
    if (signal.aborted) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        await this.#pass(signal).catch((err: unknown) => {
          if (signal.aborted) return;
          this.#onError(err);
          const retry = setTimeout(() => this.kick(signal), this.#retryMs);
          retry.unref();
        });
      } while (this.#again && !signal.aborted);
      this.#running = undefined;
    })();
  }

  /** Resolves when no pass is running. */
  async idle(): Promise<void> {
    await this.#running;
  }
}
