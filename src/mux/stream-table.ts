import { performance } from 'node:perf_hooks';
import { RhostError } from '../errors.js';
import { MAX_STREAM_ID, ProtocolError, Role, WireError } from '../protocol/index.js';
import { StreamState } from './stream.js';

/** The limits a stream table keeps (see SessionConfig). */
export interface StreamLimits {
  maxStreams: number;
  maxPendingOpens: number;
}

/**
 * The streams of one session: their ids and parity (odd for the side that
 * dialed, even for the other), the limits on how many are open and how many
 * wait for acceptance either way, and acceptance and release. The session
 * owns the wire; this owns the bookkeeping.
 */
export class StreamTable {
  readonly #limits: StreamLimits;
  readonly #streams = new Map<number, StreamState>();
  readonly #peerParity: number;
  #nextId: number;
  #lastPeerId = 0;
  /** Streams this side opened that the peer has not accepted (ACK, DATA, FIN) or refused yet. */
  #pendingOut = 0;
  /** Streams the peer opened that this side's application has not accepted yet. */
  #pendingIn = 0;

  constructor(role: Role, limits: StreamLimits) {
    this.#limits = limits;
    this.#nextId = role === Role.Initiator ? 1 : 2;
    this.#peerParity = role === Role.Initiator ? 0 : 1;
  }

  get size(): number {
    return this.#streams.size;
  }

  get pendingOut(): number {
    return this.#pendingOut;
  }

  get(id: number): StreamState | undefined {
    return this.#streams.get(id);
  }

  /** Every stream, for the session's end. */
  all(): StreamState[] {
    return [...this.#streams.values()];
  }

  /**
   * Takes the next id for a stream this side opens. Throws
   * ERR_RHOST_TOO_MANY_STREAMS, ERR_RHOST_TOO_MANY_PENDING, or
   * ERR_RHOST_GOING_AWAY when the ids are exhausted (`exhausted` is called
   * first, so the session can announce it).
   */
  openLocal(exhausted: () => void): StreamState {
    if (this.#streams.size >= this.#limits.maxStreams) {
      throw new RhostError('ERR_RHOST_TOO_MANY_STREAMS', `the session already carries ${this.#limits.maxStreams} streams`);
    }
    if (this.#pendingOut >= this.#limits.maxPendingOpens) {
      throw new RhostError('ERR_RHOST_TOO_MANY_PENDING', `${this.#pendingOut} streams wait for the peer to accept them`);
    }
    const id = this.#nextId;
    if (id > MAX_STREAM_ID) {
      exhausted();
      throw new RhostError('ERR_RHOST_GOING_AWAY', 'stream ids are exhausted');
    }
    this.#nextId += 2;
    const state = new StreamState(id, false, performance.now());
    this.#streams.set(id, state);
    this.#pendingOut++;
    return state;
  }

  /**
   * Checks the id of an OPEN from the peer: a wrong parity or an id not
   * above every earlier one is a PROTOCOL_ERROR (thrown). Returns why the
   * stream is refused (a limit), or null when it may be taken with `openRemote`.
   */
  checkRemote(id: number): string | null {
    if (id % 2 !== this.#peerParity || id <= this.#lastPeerId) {
      throw new ProtocolError('ERR_RHOST_PROTOCOL', WireError.ProtocolError, `OPEN of stream ${id} breaks the id order`);
    }
    this.#lastPeerId = id;
    if (this.#streams.size >= this.#limits.maxStreams) return `limit of ${this.#limits.maxStreams} streams`;
    if (this.#pendingIn >= this.#limits.maxPendingOpens) return `limit of ${this.#limits.maxPendingOpens} unaccepted streams`;
    return null;
  }

  /** Registers a stream the peer opened (after `checkRemote` said yes). */
  openRemote(id: number): StreamState {
    const state = new StreamState(id, true, performance.now());
    this.#streams.set(id, state);
    this.#pendingIn++;
    return state;
  }

  /** The peer took a stream this side opened. Returns false if it was already taken. */
  acceptedByPeer(state: StreamState): boolean {
    if (state.incoming || state.accepted) return false;
    state.accepted = true;
    this.#pendingOut--;
    return true;
  }

  /** This side's application took a stream the peer opened. Returns false if it was already taken. */
  acceptLocal(state: StreamState): boolean {
    if (!state.incoming || state.accepted) return false;
    state.accepted = true;
    this.#pendingIn--;
    return true;
  }

  /** Forgets a stream; one never accepted stops counting as pending. Returns false if it was gone already. */
  release(state: StreamState): boolean {
    if (state.released) return false;
    state.released = true;
    this.#streams.delete(state.id);
    if (!state.accepted) {
      state.accepted = true;
      if (state.incoming) this.#pendingIn--;
      else this.#pendingOut--;
    }
    return true;
  }
}
