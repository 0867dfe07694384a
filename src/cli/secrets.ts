import { readFileSync, statSync } from 'node:fs';
import type { Logger } from '../index.js';
import { UsageError } from './args.js';

/**
 * Reads a secret from a file (`--key-file`, `--token-file`, `--keys-file`),
 * so that it never shows on a command line in `ps`. One trailing newline is
 * dropped, as `openssl rand -base64 24 > key` writes one. A file that other
 * users may read is worth a warning, as OpenSSH gives for its keys.
 */
export function readSecretFile(path: string, flag: string, log: Logger): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`--${flag} ${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret === '') throw new UsageError(`--${flag} ${path} is empty`);
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) log.warn(`${path} can be read by other users (mode ${mode.toString(8)}): chmod 600 ${path}`);
  return secret;
}

/** The secret given inline or in a file, not both. */
export function secretFrom(inline: string | undefined, file: string | undefined, name: string, log: Logger): string | undefined {
  if (inline !== undefined && file !== undefined) throw new UsageError(`give --${name} or --${name}-file, not both`);
  return file === undefined ? inline : readSecretFile(file, `${name}-file`, log);
}
