import { X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { RhostError } from '../errors.js';

/** How an agent verifies the tunnel's certificate. */
export interface TlsClientSettings {
  /** Extra CA certificates (PEM), trusted on top of Node's (Mozilla's list and NODE_EXTRA_CA_CERTS). */
  ca?: Buffer | string | undefined;
  /** Skip verification altogether. Never the default; the CLI warns. */
  insecure?: boolean | undefined;
}

let extraCas: string[] | undefined;

/**
 * What NODE_EXTRA_CA_CERTS adds to Node's default trust. A `ca` option
 * replaces that default, so it is read here to be kept; Node itself warns
 * at start-up when the file cannot be read.
 */
function nodeExtraCas(): string[] {
  if (extraCas === undefined) {
    const file = process.env.NODE_EXTRA_CA_CERTS;
    try {
      extraCas = file ? [readFileSync(file, 'utf8')] : [];
    } catch {
      extraCas = [];
    }
  }
  return extraCas;
}

/**
 * tls.connect options for reaching `host`: SNI set for names, Node's CAs
 * plus `ca`, and the certificate checked against `host` itself, a name or
 * an IP address (over an existing socket Node would otherwise check it
 * against "localhost").
 */
export function tlsClientOptions(host: string, settings: TlsClientSettings): tls.ConnectionOptions {
  return {
    ...(net.isIP(host) ? {} : { servername: host }),
    checkServerIdentity: (_name, cert) => tls.checkServerIdentity(host, cert),
    ...(settings.ca ? { ca: [...tls.rootCertificates, ...nodeExtraCas(), settings.ca.toString()] } : {}),
    rejectUnauthorized: !settings.insecure,
  };
}

/**
 * Node's default suites with AES-128-GCM first. The server picks: AES-128
 * costs less CPU than AES-256 for the same protection in practice (and is
 * what nginx and Go prefer on AES-NI hardware), and TLS traffic through a
 * tunnel is bound by the CPU that encrypts it.
 */
const SERVER_CIPHERS = ['TLS_AES_128_GCM_SHA256', ...tls.DEFAULT_CIPHERS.split(':').filter((s) => s !== 'TLS_AES_128_GCM_SHA256')].join(':');

/** Node's codes for a certificate that could not be verified. */
const CERT_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
]);

/** Turns a TLS failure into one clear line, with what to do about it. */
export function tlsError(where: string, err: NodeJS.ErrnoException): RhostError {
  if (err.code && CERT_ERRORS.has(err.code)) {
    return new RhostError(
      'ERR_RHOST_TLS',
      `the TLS certificate of ${where} is not trusted (${err.code}: ${err.message}): give its CA with --ca FILE, or skip the check with --insecure`,
      { cause: err },
    );
  }
  // A plain tunnel takes a TLS hello for a user's bytes: it resets them, or its app answers in plain text.
  const hint = err.code && PLAIN_PEER_ERRORS.has(err.code) ? ': is it serving TLS on that port? For a plain tunnel use http:// or ws://' : '';
  const what = err.code === 'ERR_SSL_WRONG_VERSION_NUMBER' ? 'the answer is not TLS' : err.message;
  return new RhostError('ERR_RHOST_CONNECT', `TLS with ${where} failed (${what})${hint}`, { cause: err });
}

/** What a TLS hello sent to a plain-TCP tunnel comes back with. */
const PLAIN_PEER_ERRORS = new Set(['ECONNRESET', 'ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG']);

/**
 * The tunnel's certificate and key, reloaded when either file changes on
 * disk (polled, so a renewal that replaces the files by rename is seen too).
 * New connections get the current context; a file that fails to load keeps
 * the previous one and reports `error`.
 */
export class CertificateStore extends EventEmitter<{ reload: []; error: [err: Error] }> {
  readonly #certPath: string;
  readonly #keyPath: string;
  #context: tls.SecureContext;
  /** The leaf certificate, for the names it covers. */
  #leaf: X509Certificate | null = null;

  constructor(certPath: string, keyPath: string, pollIntervalMs: number) {
    super();
    this.#certPath = certPath;
    this.#keyPath = keyPath;
    this.#context = this.#load();
    const onChange = (now: { mtimeMs: number }, before: { mtimeMs: number }): void => {
      if (now.mtimeMs === before.mtimeMs) return;
      try {
        this.#context = this.#load();
        this.emit('reload');
      } catch (err) {
        this.emit('error', err as Error);
      }
    };
    watchFile(certPath, { interval: pollIntervalMs, persistent: false }, onChange);
    watchFile(keyPath, { interval: pollIntervalMs, persistent: false }, onChange);
    this.close = () => {
      unwatchFile(certPath, onChange);
      unwatchFile(keyPath, onChange);
    };
  }

  /** The context new connections use. */
  get context(): tls.SecureContext {
    return this.#context;
  }

  /** True when the certificate is valid for `name` (a DNS name; wildcards as TLS matches them). */
  covers(name: string): boolean {
    return this.#leaf?.checkHost(name, { wildcards: true, partialWildcards: false, multiLabelWildcards: false }) !== undefined;
  }

  /** Stops watching the files. */
  close: () => void;

  #load(): tls.SecureContext {
    try {
      const cert = readFileSync(this.#certPath);
      const context = tls.createSecureContext({
        cert,
        key: readFileSync(this.#keyPath),
        ciphers: SERVER_CIPHERS,
        honorCipherOrder: true,
      });
      this.#leaf = new X509Certificate(cert);
      return context;
    } catch (err) {
      throw new RhostError('ERR_RHOST_BAD_OPTION', `cannot load the TLS certificate ${this.#certPath} and key ${this.#keyPath}: ${(err as Error).message}`, { cause: err });
    }
  }
}
