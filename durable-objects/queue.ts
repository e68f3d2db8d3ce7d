/**
 * Steps that must run one after another, in the order pushed, without the
 * caller waiting for each (the fan-out tree's hand-offs, fanout-tree.ts).
 * `push` resolves at once while at most `max` steps wait behind the running
 * one, and otherwise only when its own step has run: that wait is what
 * bounds the memory the queued steps hold. A failed step is reported and
 * does not stop the ones after it.
 */
export class BoundedQueue {
  private tail: Promise<void> = Promise.resolve();
  /** Steps pushed and not yet finished, the running one included. */
  private unfinished = 0;

  constructor(
    private readonly max: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  get size(): number {
    return this.unfinished;
  }

  push(step: () => Promise<void>): Promise<void> {
    this.unfinished++;
    const run = this.tail
      .then(step)
      .catch(this.onError)
      .finally(() => {
        this.unfinished--;
      });
    this.tail = run;
    return this.unfinished > this.max + 1 ? run : Promise.resolve();
  }

  /** Resolves once every step pushed so far has run. */
  drained(): Promise<void> {
    return this.tail;
  }
}
