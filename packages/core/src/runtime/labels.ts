/** Labels are the single source of truth for finding and reaping containers. */
export const LABEL_PREFIX = 'sessionbox.';
export const Labels = {
  managed: 'sessionbox.managed',
  namespace: 'sessionbox.namespace',
  sessionId: 'sessionbox.session-id',
  host: 'sessionbox.host',
  createdAt: 'sessionbox.created-at',
  expiresAt: 'sessionbox.expires-at',
  pool: 'sessionbox.pool',
} as const;

/** Label filter that matches only this deployment's containers (never anything foreign). */
export function namespaceFilter(namespace: string): string[] {
  return [`${Labels.managed}=true`, `${Labels.namespace}=${namespace}`];
}
