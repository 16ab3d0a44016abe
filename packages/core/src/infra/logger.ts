import pino, { type Logger } from 'pino';

export function createLogger(name: string, level: string = 'info'): Logger {
  return pino({ name, level, base: { app: name } });
}
export type { Logger };
