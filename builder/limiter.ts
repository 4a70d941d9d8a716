/** Runs at most `concurrency` tasks at once; the others wait in order of arrival. */
export class Limiter {
  private readonly concurrency: number;
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(concurrency: number) {
    this.concurrency = concurrency;
  }

  /** Tasks started and not yet finished. */
  get running(): number {
    return this.active;
  }

  /** Runs `task` when a slot is free; resolves or rejects with its result. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}
