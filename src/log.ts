// The operational log: pino JSON lines on stdout. Request-scoped lines come from a
// child logger carrying `requestId`. Never log a PIN, a private key or a plaintext DEK:
// the redact list below is a last line of defence, not a licence.
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

const REDACT = [
  'pin',
  '*.pin',
  'plaintextDek',
  '*.plaintextDek',
  'privateKey',
  '*.privateKey',
  'key_pem',
  '*.keyPem',
];

export interface LoggerOptions {
  level?: LevelWithSilent;
  /** A destination stream (tests); default stdout. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const options = {
    level: opts.level ?? 'info',
    base: { service: 'hyokd' },
    redact: { paths: REDACT, censor: '[redacted]' },
  };
  return opts.destination
    ? pino(options, opts.destination as unknown as pino.DestinationStream)
    : pino(options);
}

/** A logger that drops everything (tests, embedders). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
