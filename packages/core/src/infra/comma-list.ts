import { z } from 'zod';

/** `a, b,,c` → `['a', 'b', 'c']`: the one parser of comma-separated settings and options. */
export function splitList(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** A comma-separated environment value as a list (see `splitList`). */
export const commaList = z.string().transform(splitList);
