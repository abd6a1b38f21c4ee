/**
 * Streamed answers put back together: chunks in `sequence` order, duplicates dropped.
 *
 * A responder streams one answer as `chat_response` frames sharing a `messageId`, numbered by
 * `sequence` from 0; the last has `done: true`. After a reconnect the sender may replay the answer
 * so far to the new connection, so the same chunk can arrive twice: a chunk is identified by
 * (conversationId, messageId, sequence) and kept once.
 */

import type { ChatResponse } from "./protocol.js";

export const DEFAULT_REMEMBERED_ANSWERS = 4096;
/** Content (UTF-8 bytes) of the answers still streaming, in all: the Python client's 8 MiB. */
export const DEFAULT_UNFINISHED_ANSWER_BYTES = 8 * 1024 * 1024;

/** A complete answer: its chunks in `sequence` order, the `done` frame last. */
export interface Answer {
  conversationId: string;
  messageId: string;
  /** The question's `clientMessageId`, when the responder sent it. */
  inReplyTo: string | undefined;
  content: string;
  /** The `done` frame's metadata (sources, usage... whatever the responder sends). */
  metadata: Record<string, unknown>;
  chunks: readonly ChatResponse[];
}

/** What one `chat_response` frame changed. */
export interface ChunkOutcome {
  duplicate: boolean;
  /** Content that became contiguous from the start of the answer with this frame. */
  text: string;
  answer: Answer | undefined;
}

interface Partial {
  chunks: Map<number, ChatResponse>;
  next: number;
  doneSequence: number | undefined;
  size: number; // content bytes held
}

const DUPLICATE: ChunkOutcome = { duplicate: true, text: "", answer: undefined };

/**
 * Turns frames, in any order and with repeats, into whole answers. Memory is bounded: at most
 * `remember` finished answers are remembered (so late duplicates of them are still dropped), and
 * unfinished ones are kept while they are at most `remember` and hold at most
 * `maxUnfinishedBytes` of content (UTF-8) together. Beyond either, the oldest unfinished answer is
 * given up: its later chunks are not duplicates (they still reach `frame` events) but are not kept.
 */
export class AnswerAssembler {
  readonly #partials = new Map<string, Partial>();
  readonly #finished = new Set<string>();
  readonly #givenUp = new Set<string>();
  readonly #maxUnfinishedBytes: number;
  readonly #encoder = new TextEncoder();
  #unfinishedBytes = 0;

  constructor(
    readonly remember: number = DEFAULT_REMEMBERED_ANSWERS,
    { maxUnfinishedBytes = DEFAULT_UNFINISHED_ANSWER_BYTES }: { maxUnfinishedBytes?: number } = {},
  ) {
    if (!(remember >= 1)) throw new RangeError(`remember must be at least 1, got ${remember}`);
    if (!(maxUnfinishedBytes >= 1)) {
      throw new RangeError(`maxUnfinishedBytes must be at least 1, got ${maxUnfinishedBytes}`);
    }
    this.#maxUnfinishedBytes = maxUnfinishedBytes;
  }

  /** Content bytes held for answers still streaming. */
  get unfinishedBytes(): number {
    return this.#unfinishedBytes;
  }

  add(frame: ChatResponse): ChunkOutcome {
    const key = JSON.stringify([frame.conversationId, frame.messageId]);
    if (this.#finished.has(key)) return DUPLICATE;
    if (this.#givenUp.has(key)) return { duplicate: false, text: "", answer: undefined };
    let partial = this.#partials.get(key);
    if (partial === undefined) {
      partial = { chunks: new Map(), next: 0, doneSequence: undefined, size: 0 };
      this.#partials.set(key, partial);
    }
    if (
      partial.chunks.has(frame.sequence) ||
      frame.sequence < partial.next ||
      (partial.doneSequence !== undefined && frame.sequence > partial.doneSequence)
    ) {
      return DUPLICATE;
    }
    partial.chunks.set(frame.sequence, frame);
    const size = this.#encoder.encode(frame.content).byteLength;
    partial.size += size;
    this.#unfinishedBytes += size;
    if (frame.done) partial.doneSequence = frame.sequence;
    let text = "";
    for (let chunk = partial.chunks.get(partial.next); chunk; chunk = partial.chunks.get(partial.next)) {
      text += chunk.content;
      partial.next += 1;
    }
    if (partial.doneSequence === undefined || partial.next <= partial.doneSequence) {
      while (this.#partials.size > this.remember || this.#unfinishedBytes > this.#maxUnfinishedBytes) {
        this.#giveUpOldest();
      }
      return { duplicate: false, text, answer: undefined };
    }
    this.#partials.delete(key);
    this.#unfinishedBytes -= partial.size;
    this.#finished.add(key);
    forgetOldest(this.#finished, this.remember);
    const chunks = [...partial.chunks.entries()].sort(([a], [b]) => a - b).map(([, c]) => c);
    const last = chunks[chunks.length - 1] ?? frame;
    const answer: Answer = {
      conversationId: frame.conversationId,
      messageId: frame.messageId,
      // The last chunk that names a question, as the Python client reads it.
      inReplyTo: [...chunks].reverse().find((chunk) => chunk.inReplyTo)?.inReplyTo,
      content: chunks.map((chunk) => chunk.content).join(""),
      metadata: last.metadata,
      chunks,
    };
    return { duplicate: false, text, answer };
  }

  #giveUpOldest(): void {
    const oldest = this.#partials.entries().next();
    if (oldest.done) return;
    const [key, partial] = oldest.value;
    this.#partials.delete(key);
    this.#unfinishedBytes -= partial.size;
    this.#givenUp.add(key);
    forgetOldest(this.#givenUp, this.remember);
  }
}

function forgetOldest(items: Set<string>, limit: number): void {
  while (items.size > limit) {
    const oldest = items.keys().next();
    if (oldest.done) return;
    items.delete(oldest.value);
  }
}
