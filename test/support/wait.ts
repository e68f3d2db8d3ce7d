/** Waiting on a condition with a bounded timeout, for both suites (Node and workerd). */

/**
 * Polls `check` until it returns a value other than undefined/false and
 * returns it; fails naming `what` (and `context()` when given) after `timeoutMs`.
 */
export async function waitUntil<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  everyMs = 20,
  context?: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${context ? `; ${context()}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Why a run of seqs is not contiguous (a gap, a duplicate, out of order), or undefined when it is. */
export function contiguityProblem(seqs: readonly number[]): string | undefined {
  for (let i = 1; i < seqs.length; i++) if (seqs[i] !== seqs[i - 1]! + 1) return `seq ${seqs[i]} follows ${seqs[i - 1]} at position ${i}`;
  return undefined;
}

/** Asserts a contiguous, duplicate-free, ordered run of seqs. */
export function expectContiguous(seqs: readonly number[]): void {
  const problem = contiguityProblem(seqs);
  if (problem) throw new Error(`seqs not contiguous: ${problem}`);
}
