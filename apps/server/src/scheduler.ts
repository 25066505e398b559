/**
 * A bounded queue in front of the engine: at most `concurrency` generations run at once,
 * at most `maxQueue` wait; anything beyond is refused (the server answers 429).
 */

/** Thrown by {@link Scheduler.acquire} when the queue is full. */
export class QueueFullError extends Error {
  override readonly name = 'QueueFullError';
}

/** Thrown by {@link Scheduler.acquire} when the caller's signal aborts while it waits. */
export class QueueAbortedError extends Error {
  override readonly name = 'QueueAbortedError';
}

interface Waiter {
  readonly resolve: (release: () => void) => void;
  readonly reject: (error: Error) => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
}

export interface SchedulerOptions {
  /** Generations that run at once (>= 1). */
  readonly concurrency: number;
  /** Requests that may wait for a slot (>= 0). */
  readonly maxQueue: number;
}

export class Scheduler {
  readonly concurrency: number;
  readonly maxQueue: number;
  #running = 0;
  readonly #waiting: Waiter[] = [];
  readonly #idleListeners = new Set<() => void>();

  constructor(options: SchedulerOptions) {
    if (!(Number.isInteger(options.concurrency) && options.concurrency >= 1)) {
      throw new RangeError(`concurrency must be an integer >= 1, got ${options.concurrency}`);
    }
    if (!(Number.isInteger(options.maxQueue) && options.maxQueue >= 0)) {
      throw new RangeError(`queue must be an integer >= 0, got ${options.maxQueue}`);
    }
    this.concurrency = options.concurrency;
    this.maxQueue = options.maxQueue;
  }

  /** Generations holding a slot now. */
  get running(): number {
    return this.#running;
  }

  /** Requests waiting for a slot. */
  get queued(): number {
    return this.#waiting.length;
  }

  /**
   * Waits for a slot and resolves with its `release` (call it exactly once; later calls
   * do nothing). Rejects with {@link QueueFullError} at once when the queue is full, or
   * {@link QueueAbortedError} if `signal` aborts first.
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(new QueueAbortedError('aborted before a slot was free'));
    if (this.#running < this.concurrency) {
      this.#running++;
      return Promise.resolve(this.#releaser());
    }
    if (this.#waiting.length >= this.maxQueue) {
      return Promise.reject(
        new QueueFullError(
          `the server is busy: ${this.#running} requests running and ${this.#waiting.length} queued (queue size ${this.maxQueue})`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const at = this.#waiting.indexOf(waiter);
          if (at >= 0) this.#waiting.splice(at, 1);
          reject(new QueueAbortedError('aborted while queued'));
          this.#notifyIdle();
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  /** Resolves when nothing runs and nothing waits. */
  whenIdle(): Promise<void> {
    if (this.#running === 0 && this.#waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const listener = () => {
        this.#idleListeners.delete(listener);
        resolve();
      };
      this.#idleListeners.add(listener);
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) {
        next.signal?.removeEventListener('abort', next.onAbort);
        next.resolve(this.#releaser());
        return;
      }
      this.#running--;
      this.#notifyIdle();
    };
  }

  #notifyIdle(): void {
    if (this.#running !== 0 || this.#waiting.length !== 0) return;
    for (const listener of [...this.#idleListeners]) listener();
  }
}
