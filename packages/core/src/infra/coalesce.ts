/**
 * Wake-ups that each call for a fresh look (a notification, a heartbeat) but must never run two
 * looks at once: a wake-up during a pass makes one more pass after it, however many came. `pass`
 * returns true when nothing more is to be done; after that, or after it throws (`onError`), later
 * wake-ups do nothing.
 */
export function coalesce(pass: () => Promise<boolean | void>, onError: (err: unknown) => void): () => Promise<void> {
  let running = false;
  let again = false;
  let finished = false;
  return async () => {
    if (finished) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        if ((await pass()) === true) finished = true;
      } while (again && !finished);
    } catch (err) {
      finished = true;
      onError(err);
    } finally {
      running = false;
    }
  };
}
