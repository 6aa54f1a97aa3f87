// A bounded-frequency runner with upstream's semantics
// (pkg/proxy/runner/bounded_frequency_runner.go): runs are at least
// minInterval apart, a failed run is retried within retryInterval, and a run
// happens at least every maxInterval. Runs never overlap; requests that
// arrive during a run are folded into one run after it.

export interface Clock {
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface RunnerOptions {
  minIntervalMs: number;
  retryIntervalMs: number;
  maxIntervalMs: number;
}

export class BoundedFrequencyRunner {
  private lastRun = Number.NEGATIVE_INFINITY;
  private running = false;
  private pending = false;
  private stopped = true;
  private timer: unknown = null;
  private nextAt = Infinity;
  /** Resolves when the current run ends (for stop()). */
  private inflight: Promise<void> | null = null;
  runs = 0;
  failures = 0;

  constructor(
    readonly name: string,
    private readonly fn: () => Promise<void>,
    private readonly opts: RunnerOptions,
    private readonly clock: Clock = realClock,
    private readonly onError: (e: unknown) => void = () => {},
  ) {}

  /** Starts the periodic schedule; the first run happens on the first run() request or after maxInterval. */
  start(): void {
    this.stopped = false;
    this.schedule(this.clock.now() + this.opts.maxIntervalMs);
  }

  /** Requests a run as soon as minInterval allows. */
  run(): void {
    if (this.stopped) return;
    if (this.running) {
      this.pending = true;
      return;
    }
    this.schedule(Math.max(this.clock.now(), this.lastRun + this.opts.minIntervalMs));
  }

  /** Stops scheduling and waits for a run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancel();
    if (this.inflight) await this.inflight;
  }

  private cancel(): void {
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.timer = null;
    this.nextAt = Infinity;
  }

  /** Arms the timer for `at` unless it is already armed for earlier. */
  private schedule(at: number): void {
    if (this.stopped) return;
    if (this.timer !== null && this.nextAt <= at) return;
    this.cancel();
    this.nextAt = at;
    this.timer = this.clock.setTimer(() => this.fire(), Math.max(0, at - this.clock.now()));
  }

  private fire(): void {
    this.timer = null;
    this.nextAt = Infinity;
    if (this.stopped) return;
    if (this.running) {
      this.pending = true;
      return;
    }
    this.inflight = this.execute();
  }

  private async execute(): Promise<void> {
    this.running = true;
    this.pending = false;
    this.lastRun = this.clock.now();
    let ok = true;
    try {
      this.runs++;
      await this.fn();
    } catch (e) {
      ok = false;
      this.failures++;
      this.onError(e);
    } finally {
      this.running = false;
      this.inflight = null;
    }
    if (this.stopped) return;
    this.cancel();
    const now = this.clock.now();
    this.schedule(now + (ok ? this.opts.maxIntervalMs : Math.min(this.opts.retryIntervalMs, this.opts.maxIntervalMs)));
    if (this.pending) {
      this.pending = false;
      this.run();
    }
  }
}
