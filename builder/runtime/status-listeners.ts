import type { EndpointStatus } from './runtime.ts';

/** The `onChange` listeners of a runtime: each gets every status; a throwing one harms no other. */
export class StatusListeners {
  readonly #listeners = new Set<(status: EndpointStatus) => void>();

  /** Registers `listener`; returns the unsubscribe. */
  add(listener: (status: EndpointStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Sends `status` to every listener. */
  emit(status: EndpointStatus): void {
    for (const l of this.#listeners) {
      try {
        l(status);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  /** Drops every listener (the runtime closed). */
  clear(): void {
    this.#listeners.clear();
  }
}
