/** Pieces at most this big are copied into a shared tail buffer instead of being queued one by one. */
const SMALL_PIECE_BYTES = 1024;
const MIN_TAIL_BYTES = 256;
const MAX_TAIL_BYTES = 16 * 1024;

/**
 * Received bytes a stream's reader has not asked for yet. Its size is bounded
 * by the stream's receive window. Small pieces are coalesced, so a peer that
 * sends one byte per frame costs bytes, not one Buffer object per byte.
 */
export class ReceiveQueue {
  #items: Buffer[] = [];
  #head = 0;
  #tail: Buffer | null = null;
  #tailUsed = 0;
  #bytes = 0;

  /** Bytes queued. */
  get bytes(): number {
    return this.#bytes;
  }

  get empty(): boolean {
    return this.#bytes === 0;
  }

  push(piece: Buffer): void {
    if (piece.length === 0) return;
    this.#bytes += piece.length;
    if (piece.length > SMALL_PIECE_BYTES) {
      this.#sealTail();
      this.#items.push(piece);
      return;
    }
    if (this.#tail === null || this.#tail.length - this.#tailUsed < piece.length) {
      this.#sealTail();
      const size = Math.min(MAX_TAIL_BYTES, Math.max(MIN_TAIL_BYTES, this.#bytes));
      this.#tail = Buffer.allocUnsafeSlow(Math.max(size, piece.length));
    }
    this.#tailUsed += piece.copy(this.#tail!, this.#tailUsed);
  }

  /** Removes and returns the oldest bytes, or undefined when empty. */
  shift(): Buffer | undefined {
    if (this.#head === this.#items.length) this.#sealTail();
    if (this.#head === this.#items.length) return undefined;
    const item = this.#items[this.#head++]!;
    if (this.#head === this.#items.length) {
      this.#items.length = 0;
      this.#head = 0;
    } else if (this.#head >= 1024) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    this.#bytes -= item.length;
    return item;
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
    this.#tail = null;
    this.#tailUsed = 0;
    this.#bytes = 0;
  }

  #sealTail(): void {
    if (this.#tail !== null && this.#tailUsed > 0) this.#items.push(this.#tail.subarray(0, this.#tailUsed));
    this.#tail = null;
    this.#tailUsed = 0;
  }
}
