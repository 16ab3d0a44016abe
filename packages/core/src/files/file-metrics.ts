import { Counter, Histogram, type Registry } from 'prom-client';

/** A counter in `registry`, shared by every object of the process that asks for the same name. */
export function sharedCounter<L extends string>(registry: Registry | undefined, name: string, help: string, labelNames: L[]): Counter<L> {
  const existing = registry?.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter<L>({ name, help, labelNames, registers: registry ? [registry] : [] });
}

/** A histogram in `registry`, shared like `sharedCounter`. */
export function sharedHistogram(registry: Registry | undefined, name: string, help: string): Histogram<string> {
  const existing = registry?.getSingleMetric(name);
  if (existing) return existing as Histogram<string>;
  return new Histogram({ name, help, registers: registry ? [registry] : [] });
}
