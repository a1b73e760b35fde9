import { pino, type Logger } from 'pino';

/** JSON logs, one line per event, on stdout (or the given stream), with the component's name. */
export function createLogger(
  component: string,
  level = process.env.LOG_LEVEL ?? 'info',
  destination?: NodeJS.WritableStream,
): Logger {
  return pino(
    { name: component, level, base: { component }, timestamp: pino.stdTimeFunctions.isoTime },
    destination ?? process.stdout,
  );
}

export type { Logger };
