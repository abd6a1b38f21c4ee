/**
 * ChatClient: a WebSocket chat connection that comes back by itself and loses no message, with
 * the Python client's guarantees (client/chat_client.py):
 *
 * - Reconnect: any drop starts reconnect attempts with full-jitter backoff (the first within
 *   250 ms, then at most 2 s apart), each with a fresh token from `getToken`. The backoff starts
 *   over only after a connection stayed up `stableAfterMs`, so a server that accepts and drops at
 *   once is not hit in a tight loop.
 * - Refused tokens: a browser never sees the HTTP status of a refused handshake. A handshake that
 *   fails before opening is followed by a probe (an HTTP request to the same URL, no token): if the
 *   server answers, the handshake was refused; `authFailureAttempts` refusals in a row, each with a
 *   fresh token, stop the client with `AuthenticationError` (`auth_failed`), on a reconnect only
 *   once they have lasted `authFailureWindowMs` (a 429 from API Gateway's throttling when many
 *   clients reconnect at once, or a 500 from a failing authorizer, is refused just the same). If
 *   the server does not answer, it is down or unreachable and the client keeps trying.
 * - Keep-alive: the `ping` action every `pingIntervalMs`; no frame at all within `pongTimeoutMs`
 *   of a ping marks the connection dead and it is replaced.
 * - Delivery: each chat message carries a `clientMessageId` and stays pending until its
 *   `system/accepted`; it is re-sent with the same id after a reconnect, after a retryable `error`
 *   and when nothing answered it within `resendAfterMs`. After `acceptTimeoutMs` it fails.
 * - Answers: `chat_response` chunks are deduplicated by (conversationId, messageId, sequence)
 *   before anyone sees them and assembled into whole answers; `ask()` resolves to the answer whose
 *   `inReplyTo` is its own `clientMessageId`.
 * - Instance id: each client object has its own `instanceId` (128 random bits unless given), sent
 *   on every (re)connect; the server then closes the connection this client opened before, which
 *   a dead path (a network change, a pong timeout) can leave open at API Gateway, so answers
 *   still streaming are replayed onto the new connection instead of going to the old one.
 */

import { AnswerAssembler, type Answer } from "./answers.js";
import { Backoff, DEFAULT_INITIAL_DELAY_MS, DEFAULT_MAX_DELAY_MS } from "./backoff.js";
import {
  AuthenticationError,
  ChatClientError,
  ChatMessageTooLargeError,
  ClientClosedError,
  ClientUsageError,
  ConnectError,
  InvalidMessageError,
  MessageNotAcceptedError,
  MessageRejectedError,
} from "./errors.js";
import {
  DEDUPLICATION_WINDOW_SECONDS,
  ID_PATTERN,
  IDLE_TIMEOUT_SECONDS,
  INSTANCE_ID_PATTERN,
  INSTANCE_QUERY_PARAMETER,
  MAX_FRAME_BYTES,
  TOKEN_QUERY_PARAMETER,
  type ChatMessageAction,
  type ChatResponse,
  type ErrorFrame,
  type OutboundFrame,
  type SystemFrame,
  type TypingIndicator,
} from "./protocol.js";

/** A token, or a (sync or async) function called for a fresh one on every (re)connect. */
export type TokenSource = string | (() => string | Promise<string>);

/** The part of the WebSocket interface the client uses (the browser's, Node's, or a fake). */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((event: Event) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type SocketFactory = new (url: string) => SocketLike;

export interface ChatClientOptions {
  /** How often the `ping` action is sent; below API Gateway's 10-minute idle timeout. */
  pingIntervalMs?: number;
  /** A ping answered by no frame at all within this marks the connection dead. */
  pongTimeoutMs?: number;
  /**
   * A chat message not accepted this long after `sendChat` fails (`MessageNotAcceptedError`).
   * At most SQS's 5-minute deduplication window: a re-send after it could be queued twice.
   */
  acceptTimeoutMs?: number;
  /** A chat message with no answer (accepted or error) this long after sending is sent again. */
  resendAfterMs?: number;
  /** The full-jitter backoff's first ceiling: the first reconnect attempt comes within this. */
  reconnectInitialDelayMs?: number;
  /** The backoff's cap. */
  reconnectMaxDelayMs?: number;
  /** One connection attempt (token, handshake, authorizer) at most this long. */
  openTimeoutMs?: number;
  /** A connection up this long starts the backoff over at its next drop. */
  stableAfterMs?: number;
  /** Handshakes refused in a row, with fresh tokens, while the server answers HTTP: auth failed. */
  authFailureAttempts?: number;
  /**
   * On a reconnect, the refusals must also have gone on this long before the client stops: a
   * browser cannot tell a refused token from API Gateway's 429 (throttling, when many clients
   * reconnect at once after a network blip or the 2-hour limit) or a 500 (an authorizer that
   * cannot reach its JWKS), which pass. `connect()` keeps the quick answer: nothing is pending.
   */
  authFailureWindowMs?: number;
  /** Does the server answer HTTP at `httpUrl`? The default asks with `fetch` (no token sent). */
  probe?: (httpUrl: string, timeoutMs: number) => Promise<boolean>;
  /** The WebSocket class; the global one by default. */
  WebSocket?: SocketFactory;
  /** Random numbers in [0, 1) for the jitter. */
  random?: () => number;
  /**
   * This client object's id, the `instanceId` query parameter of every (re)connect: the server
   * closes the connection the same user and instance opened before. By default 128 random bits
   * (32 hex characters), drawn once per ChatClient; if given, it must match `INSTANCE_ID_PATTERN`
   * and differ between client objects (two tabs with one id would close each other's connection).
   */
  instanceId?: string;
}

export const DEFAULT_OPTIONS: Readonly<
  Required<Omit<ChatClientOptions, "WebSocket" | "instanceId">>
> = {
  pingIntervalMs: (IDLE_TIMEOUT_SECONDS * 1000) / 2,
  pongTimeoutMs: 15_000, // a ping runs a Lambda function: allow for a cold start
  acceptTimeoutMs: 30_000,
  resendAfterMs: 10_000,
  reconnectInitialDelayMs: DEFAULT_INITIAL_DELAY_MS,
  reconnectMaxDelayMs: DEFAULT_MAX_DELAY_MS,
  openTimeoutMs: 10_000, // TLS, then the authorizer and $connect functions (cold starts)
  stableAfterMs: 5_000,
  authFailureAttempts: 3,
  authFailureWindowMs: 30_000,
  probe: fetchProbe,
  random: Math.random,
};

/** A retryable error without `retryAfterMs` (the queue was unavailable): re-send after this. */
const RETRY_WITHOUT_HINT_MS = 1000;
/** Outcomes of finished messages kept for late `waitAccepted` calls. */
const REMEMBERED_OUTCOMES = 4096;
/** Answers no `ask` or `receiveAnswer` claimed, kept per conversation (the newest). */
const ANSWER_BACKLOG = 64;
// Conversations whose unclaimed answers are kept: the most recently answered, as in Python.
const BACKLOG_CONVERSATIONS = 1024;
const OPEN = 1;
const ID = new RegExp(ID_PATTERN);
const INSTANCE_ID = new RegExp(INSTANCE_ID_PATTERN);
const PING_TEXT = JSON.stringify({ action: "ping" });

/** The server queued a chat message (its `system/accepted` frame). */
export interface Accepted {
  clientMessageId: string;
  conversationId: string;
  messageId: string | undefined;
  frame: SystemFrame;
}

export interface ConnectionDetail {
  /** Reconnect attempts since the drop, from 1. */
  attempt: number;
  /** `reconnecting`: the backoff delay before this attempt. */
  delayMs?: number;
  /** `disconnected`: the WebSocket close code (1006: no close frame). */
  closeCode?: number;
  reason?: string;
  /** `reconnected`: milliseconds from the drop. */
  downtimeMs?: number;
}

/** The events a ChatClient dispatches, each a `CustomEvent` with this `detail`. */
export interface ChatClientEventMap {
  connected: CustomEvent<ConnectionDetail>;
  disconnected: CustomEvent<ConnectionDetail>;
  reconnecting: CustomEvent<ConnectionDetail>;
  reconnect_failed: CustomEvent<ConnectionDetail>;
  reconnected: CustomEvent<ConnectionDetail>;
  auth_failed: CustomEvent<ConnectionDetail>;
  closed: CustomEvent<ConnectionDetail>;
  /** Every frame received, chat_response chunks deduplicated. */
  frame: CustomEvent<OutboundFrame>;
  typing: CustomEvent<TypingIndicator>;
  /** A chunk that made more of an answer contiguous: `text` is what to append. */
  chunk: CustomEvent<{ frame: ChatResponse; text: string }>;
  answer: CustomEvent<Answer>;
}

interface Pending {
  clientMessageId: string;
  conversationId: string;
  text: string;
  settle: Deferred<Accepted>;
  deadline: ReturnType<typeof setTimeout>;
  resend: ReturnType<typeof setTimeout> | undefined;
  sentOn: number | undefined;
  lastError: string | undefined;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

class OpenFailure extends Error {
  constructor(
    message: string,
    readonly beforeOpen: boolean,
  ) {
    super(message);
  }
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A failure nobody awaits (a message whose caller never called waitAccepted) is not an error.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function newId(): string {
  return globalThis.crypto.randomUUID().replaceAll("-", "");
}

/** 128 random bits as 32 hex characters: an `instanceId` (INSTANCE_ID_PATTERN). */
function newInstanceId(): string {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** True when anything answers HTTP at `url`: a no-cors fetch resolves on any status. */
export async function fetchProbe(url: string, timeoutMs: number): Promise<boolean> {
  try {
    await fetch(url, {
      mode: "no-cors",
      cache: "no-store",
      credentials: "omit",
      signal: AbortSignal.timeout(timeoutMs),
    });
    return true;
  } catch {
    return false;
  }
}

export interface ChatClient {
  addEventListener<K extends keyof ChatClientEventMap>(
    type: K,
    listener: (event: ChatClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof ChatClientEventMap>(
    type: K,
    listener: (event: ChatClientEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}

/** One user's reconnecting chat connection. */
export class ChatClient extends EventTarget {
  readonly options: Readonly<Required<Omit<ChatClientOptions, "WebSocket" | "instanceId">>>;
  /** This client object's id, sent on every (re)connect (`ChatClientOptions.instanceId`). */
  readonly instanceId: string;
  /** Chunks received twice (replayed after a reconnect) and dropped. */
  duplicateChunksDropped = 0;

  readonly #socketClass: SocketFactory;
  readonly #backoff: Backoff;
  readonly #assembler = new AnswerAssembler();
  readonly #pending = new Map<string, Pending>();
  readonly #outcomes = new Map<string, Promise<Accepted>>();
  readonly #askWaiters = new Map<string, Deferred<Answer>>();
  readonly #inbox = new Map<string, Answer[]>();
  readonly #inboxWaiters = new Map<string, Deferred<Answer>[]>();
  #url: URL | undefined;
  #getToken: TokenSource | undefined;
  #ws: SocketLike | undefined;
  #generation = 0;
  #started = false;
  #closing = false;
  #failure: ChatClientError | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #pongTimer: ReturnType<typeof setTimeout> | undefined;
  #openedAt = 0;

  constructor(options: ChatClientOptions = {}) {
    super();
    const { WebSocket: socketClass, instanceId, ...rest } = options;
    const defined = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
    this.options = Object.freeze({ ...DEFAULT_OPTIONS, ...defined });
    for (const [name, value] of Object.entries(this.options)) {
      if (typeof value === "number" && !(value > 0)) {
        throw new RangeError(`ChatClient option ${name} must be a number > 0, got ${value}`);
      }
    }
    if (this.options.pingIntervalMs >= IDLE_TIMEOUT_SECONDS * 1000) {
      throw new RangeError(
        `ChatClient option pingIntervalMs must be below the ${IDLE_TIMEOUT_SECONDS} s idle ` +
          `timeout or the gateway closes idle connections; got ${this.options.pingIntervalMs}`,
      );
    }
    if (this.options.acceptTimeoutMs > DEDUPLICATION_WINDOW_SECONDS * 1000) {
      throw new RangeError(
        `ChatClient option acceptTimeoutMs must be at most SQS's ` +
          `${DEDUPLICATION_WINDOW_SECONDS} s deduplication window, or a re-sent message could ` +
          `be queued twice; got ${this.options.acceptTimeoutMs}`,
      );
    }
    if (
      instanceId !== undefined &&
      (typeof instanceId !== "string" || !INSTANCE_ID.test(instanceId))
    ) {
      throw new RangeError(
        `ChatClient option instanceId must match ${INSTANCE_ID_PATTERN} (1-64 letters, digits, ` +
          `"_" or "-"); got ${JSON.stringify(instanceId)}. Leave it out for a random id, or pass ` +
          `one that stays the same for this client object and differs between client objects`,
      );
    }
    this.instanceId = instanceId ?? newInstanceId();
    const globalSocket = (globalThis as { WebSocket?: SocketFactory }).WebSocket;
    const chosen = socketClass ?? globalSocket;
    if (chosen === undefined) {
      throw new TypeError(
        "no WebSocket class: pass options.WebSocket (Node 20: run with --experimental-websocket)",
      );
    }
    this.#socketClass = chosen;
    this.#backoff = new Backoff(
      this.options.reconnectInitialDelayMs,
      this.options.reconnectMaxDelayMs,
      this.options.random,
    );
  }

  get connected(): boolean {
    return this.#ws !== undefined && this.#ws.readyState === OPEN;
  }

  /** Why the client stopped by itself (an `AuthenticationError`), else undefined. */
  get failure(): ChatClientError | undefined {
    return this.#failure;
  }

  // --- Lifecycle ------------------------------------------------------------------------------

  /**
   * Open the first connection, then keep one open until `close()`. Rejects with
   * `AuthenticationError` when the token is refused and `ConnectError` when the server cannot be
   * reached (or `getToken` fails); the client can then be connected again. A `close()` before the
   * handshake completed makes it reject with `ClientClosedError`, keeping no connection.
   */
  async connect(url: string, getToken: TokenSource): Promise<void> {
    if (this.#started || this.#closing) {
      throw new ClientUsageError(
        "connect() can be called once per ChatClient (while it is not connected)",
      );
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new ClientUsageError(`${url} is not a URL; expected wss://host/stage`);
    }
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      throw new ClientUsageError(`${url} must start with wss:// (or ws:// for local mode)`);
    }
    this.#started = true;
    this.#url = parsed;
    this.#getToken = getToken;
    let refusals = 0;
    for (;;) {
      try {
        const ws = await this.#open();
        if (this.#closing) {
          // close() ran while the handshake was on its way: keep no connection (nor its pings).
          ws.close(1000, "client closed");
          throw new ClientClosedError("the client was closed while connecting");
        }
        this.#emit("connected", { attempt: 0 });
        this.#serve(ws);
        return;
      } catch (error) {
        if (error instanceof ClientClosedError) throw error;
        const refused = error instanceof OpenFailure && (await this.#refusedWhileReachable(error));
        refusals = refused ? refusals + 1 : 0;
        if (refused && refusals < this.options.authFailureAttempts && !this.#closing) {
          await sleep(this.#backoff.next());
          continue;
        }
        this.#started = false;
        this.#backoff.reset();
        if (refused) throw new AuthenticationError(refusals);
        throw new ConnectError(
          `could not connect to ${parsed.origin}${parsed.pathname}: ${describe(error)}`,
        );
      }
    }
  }

  /** Close the connection (1000) and stop; pending messages fail with `ClientClosedError`. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const ws = this.#ws;
    this.#detach();
    ws?.close(1000, "client closed");
    if (this.#failure === undefined) {
      this.#stop(new ClientClosedError("the client was closed"));
      this.#emit("closed", { attempt: 0 });
    }
  }

  // --- Sending --------------------------------------------------------------------------------

  /**
   * Send a chat message; returns its `clientMessageId` at once. The message is kept, and
   * re-sent as needed, until the server accepts it: await `waitAccepted(id)` to know. While
   * disconnected it is sent after the reconnect. Throws `ChatMessageTooLargeError` when its JSON
   * is over the 32 KB frame limit and `InvalidMessageError` for an empty content or a bad id.
   */
  sendChat(conversationId: string, content: string, clientMessageId: string = newId()): string {
    this.#checkUsable();
    for (const [name, value] of [
      ["conversationId", conversationId],
      ["clientMessageId", clientMessageId],
    ] as const) {
      if (typeof value !== "string" || !ID.test(value)) {
        throw new InvalidMessageError(
          `${name} ${JSON.stringify(value)} must be 1-128 printable ASCII characters`,
        );
      }
    }
    if (typeof content !== "string" || content.length === 0) {
      throw new InvalidMessageError("content must be a non-empty string");
    }
    if (this.#pending.has(clientMessageId)) {
      throw new InvalidMessageError(`clientMessageId ${clientMessageId} is already pending`);
    }
    const action: ChatMessageAction = {
      action: "chat_message",
      conversationId,
      content,
      clientMessageId,
    };
    const text = JSON.stringify(action);
    const size = new TextEncoder().encode(text).byteLength;
    if (size > MAX_FRAME_BYTES) throw new ChatMessageTooLargeError(size);
    const pending: Pending = {
      clientMessageId,
      conversationId,
      text,
      settle: deferred(),
      deadline: setTimeout(() => this.#expire(pending), this.options.acceptTimeoutMs),
      resend: undefined,
      sentOn: undefined,
      lastError: undefined,
    };
    this.#pending.set(clientMessageId, pending);
    this.#transmit(pending, false);
    return clientMessageId;
  }

  /**
   * Wait until the server accepts the message. Rejects with `MessageNotAcceptedError` after
   * `acceptTimeoutMs`, `MessageRejectedError` on a non-retryable error frame, and
   * `ClientClosedError` / `AuthenticationError` if the client stops first.
   */
  waitAccepted(clientMessageId: string): Promise<Accepted> {
    const promise =
      this.#pending.get(clientMessageId)?.settle.promise ?? this.#outcomes.get(clientMessageId);
    if (promise === undefined) {
      return Promise.reject(
        new InvalidMessageError(
          `unknown clientMessageId ${clientMessageId}: not sent by this client ` +
            `or finished more than ${REMEMBERED_OUTCOMES} messages ago`,
        ),
      );
    }
    return promise;
  }

  /** The clientMessageIds sent but not yet accepted, oldest first. */
  pendingIds(): string[] {
    return [...this.#pending.keys()];
  }

  // --- Answers --------------------------------------------------------------------------------

  /**
   * Send a question and resolve to its whole answer: the one whose `inReplyTo` is this
   * question's `clientMessageId`. Concurrent `ask`s each get their own answer; an answer that
   * arrives after its `ask` stopped waiting (aborted) goes to `answer` events and `receiveAnswer`,
   * never to another `ask`. Needs a responder that names the question (`inReplyTo`, as the demo
   * responder does); an answer without it goes to `receiveAnswer` only, so with a responder that
   * does not set it use `sendChat` and `receiveAnswer`. Bound the wait yourself
   * (`AbortSignal.timeout`, `Promise.race`): an answer can take as long as the responder needs.
   */
  async ask(
    conversationId: string,
    content: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<Answer> {
    const clientMessageId = newId();
    const reply = deferred<Answer>();
    this.#askWaiters.set(clientMessageId, reply);
    const abort = (): void => reply.reject(options.signal?.reason);
    options.signal?.addEventListener("abort", abort, { once: true });
    try {
      options.signal?.throwIfAborted();
      this.sendChat(conversationId, content, clientMessageId);
      await Promise.race([this.waitAccepted(clientMessageId), reply.promise]);
      return await reply.promise;
    } finally {
      this.#askWaiters.delete(clientMessageId);
      options.signal?.removeEventListener("abort", abort);
    }
  }

  /** The next whole answer in this conversation that no `ask()` claimed, oldest first. */
  receiveAnswer(conversationId: string): Promise<Answer> {
    const unread = this.#inbox.get(conversationId);
    const answer = unread?.shift();
    if (answer !== undefined) {
      if (unread?.length === 0) this.#inbox.delete(conversationId);
      return Promise.resolve(answer);
    }
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#closing) return Promise.reject(new ClientClosedError("the client is closed"));
    const waiter = deferred<Answer>();
    const waiters = this.#inboxWaiters.get(conversationId) ?? [];
    waiters.push(waiter);
    this.#inboxWaiters.set(conversationId, waiters);
    return waiter.promise;
  }

  // --- Connection supervision -----------------------------------------------------------------

  async #open(): Promise<SocketLike> {
    const url = new URL(this.#url!.href);
    let token: string;
    try {
      const source = this.#getToken!;
      token = typeof source === "string" ? source : await withTimeout(source(), this.options.openTimeoutMs, "getToken");
    } catch (error) {
      throw new Error(`the token provider failed: ${describe(error)}`);
    }
    url.searchParams.set(TOKEN_QUERY_PARAMETER, token);
    url.searchParams.set(INSTANCE_QUERY_PARAMETER, this.instanceId);
    const ws = new this.#socketClass(url.href);
    return new Promise<SocketLike>((resolve, reject) => {
      const timer = setTimeout(() => {
        ws.onopen = ws.onclose = ws.onerror = null;
        ws.close();
        reject(new OpenFailure(`no handshake within ${this.options.openTimeoutMs} ms`, false));
      }, this.options.openTimeoutMs);
      ws.onopen = () => {
        clearTimeout(timer);
        resolve(ws);
      };
      const refused = (detail: string): void => {
        clearTimeout(timer);
        ws.onopen = ws.onclose = ws.onerror = null;
        reject(new OpenFailure(`the handshake failed (${detail})`, true));
      };
      // Browsers fire error then close; Node 20's WebSocket fires only error.
      ws.onerror = () => refused("error before open");
      ws.onclose = (event) => refused(`close code ${event.code}`);
    });
  }

  /** A handshake that failed before opening while the server answers HTTP was refused. */
  async #refusedWhileReachable(failure: OpenFailure): Promise<boolean> {
    if (!failure.beforeOpen) return false;
    const http = new URL(this.#url!.href);
    http.protocol = http.protocol === "wss:" ? "https:" : "http:";
    http.search = "";
    return this.options.probe(http.href, this.options.openTimeoutMs);
  }

  #serve(ws: SocketLike): void {
    this.#ws = ws;
    this.#openedAt = Date.now();
    this.#generation += 1;
    ws.onmessage = (event) => this.#onMessage(event.data);
    ws.onclose = (event) => this.#onDrop(ws, event.code, event.reason);
    ws.onerror = () => {
      ws.close();
      this.#onDrop(ws, 1006, "socket error");
    };
    this.#pingTimer = setInterval(() => this.#ping(ws), this.options.pingIntervalMs);
    for (const pending of this.#pending.values()) this.#transmit(pending, false);
  }

  #ping(ws: SocketLike): void {
    if (this.#pongTimer !== undefined) return;
    // Any frame after the ping proves the connection alive: the pong, or whatever a busy
    // connection was receiving anyway.
    this.#pongTimer = setTimeout(() => {
      this.#pongTimer = undefined;
      ws.close();
      this.#onDrop(ws, 1006, `no answer to ping within ${this.options.pongTimeoutMs} ms`);
    }, this.options.pongTimeoutMs);
    ws.send(PING_TEXT);
  }

  #detach(): void {
    clearInterval(this.#pingTimer);
    clearTimeout(this.#pongTimer);
    this.#pingTimer = this.#pongTimer = undefined;
    if (this.#ws !== undefined) {
      this.#ws.onmessage = this.#ws.onclose = this.#ws.onerror = null;
    }
    this.#ws = undefined;
  }

  #onDrop(ws: SocketLike, closeCode: number, reason: string): void {
    if (this.#ws !== ws || this.#closing) return;
    this.#detach();
    if (Date.now() - this.#openedAt >= this.options.stableAfterMs) this.#backoff.reset();
    this.#emit("disconnected", { attempt: 0, closeCode, reason });
    void this.#reconnect(Date.now());
  }

  async #reconnect(droppedAt: number): Promise<void> {
    let refusals = 0;
    let refusedSince = 0;
    for (let attempt = 1; !this.#closing; attempt += 1) {
      const delayMs = this.#backoff.next();
      this.#emit("reconnecting", { attempt, delayMs });
      await sleep(delayMs);
      if (this.#closing) return;
      let ws: SocketLike;
      try {
        ws = await this.#open();
      } catch (error) {
        if (this.#closing) return;
        const refused = error instanceof OpenFailure && (await this.#refusedWhileReachable(error));
        if (refused && refusals === 0) refusedSince = Date.now();
        refusals = refused ? refusals + 1 : 0;
        this.#emit("reconnect_failed", { attempt, reason: describe(error) });
        if (
          refusals >= this.options.authFailureAttempts &&
          Date.now() - refusedSince >= this.options.authFailureWindowMs
        ) {
          const failure = new AuthenticationError(refusals);
          this.#failure = failure;
          this.#closing = true;
          this.#emit("auth_failed", { attempt, reason: failure.message });
          this.#stop(failure);
          return;
        }
        continue;
      }
      if (this.#closing) {
        ws.close(1000, "client closed");
        return;
      }
      this.#emit("reconnected", { attempt, downtimeMs: Date.now() - droppedAt });
      this.#serve(ws);
      return;
    }
  }

  // --- Receiving ------------------------------------------------------------------------------

  #onMessage(data: unknown): void {
    clearTimeout(this.#pongTimer);
    this.#pongTimer = undefined;
    if (typeof data !== "string") return;
    let frame: OutboundFrame;
    try {
      frame = JSON.parse(data) as OutboundFrame;
    } catch {
      return; // not JSON: outside the protocol
    }
    if (typeof frame !== "object" || frame === null || typeof frame.type !== "string") return;
    switch (frame.type) {
      case "chat_response": {
        const outcome = this.#assembler.add(frame);
        if (outcome.duplicate) {
          this.duplicateChunksDropped += 1;
          return;
        }
        this.#emit("frame", frame);
        if (outcome.text) this.#emit("chunk", { frame, text: outcome.text });
        if (outcome.answer !== undefined) this.#deliver(outcome.answer);
        return;
      }
      case "typing_indicator":
        this.#emit("frame", frame);
        this.#emit("typing", frame);
        return;
      case "system":
        if (frame.event === "accepted") this.#onAccepted(frame);
        break;
      case "error":
        this.#onError(frame);
        break;
    }
    this.#emit("frame", frame);
  }

  #deliver(answer: Answer): void {
    this.#emit("answer", answer);
    // Only an answer naming its question goes to an `ask`: one without `inReplyTo` could be the
    // answer to any question of its conversation, so it goes to `receiveAnswer` like the rest.
    const question = answer.inReplyTo;
    const reply = question === undefined ? undefined : this.#askWaiters.get(question);
    if (question !== undefined && reply !== undefined) {
      this.#askWaiters.delete(question);
      reply.resolve(answer);
      return;
    }
    const waiters = this.#inboxWaiters.get(answer.conversationId);
    const next = waiters?.shift();
    if (waiters?.length === 0) this.#inboxWaiters.delete(answer.conversationId);
    if (next !== undefined) {
      next.resolve(answer);
      return;
    }
    const unread = this.#inbox.get(answer.conversationId) ?? [];
    unread.push(answer);
    if (unread.length > ANSWER_BACKLOG) unread.shift();
    this.#inbox.delete(answer.conversationId); // re-inserted last: the most recently answered
    this.#inbox.set(answer.conversationId, unread);
    if (this.#inbox.size > BACKLOG_CONVERSATIONS) {
      const oldest = this.#inbox.keys().next();
      if (!oldest.done) this.#inbox.delete(oldest.value);
    }
  }

  #onAccepted(frame: SystemFrame): void {
    const id = frame.data?.["clientMessageId"];
    const pending = typeof id === "string" ? this.#pending.get(id) : undefined;
    if (pending === undefined) return; // the answer to a re-send of a message accepted already
    const serverId = frame.data?.["messageId"];
    this.#finish(pending);
    pending.settle.resolve({
      clientMessageId: pending.clientMessageId,
      conversationId: pending.conversationId,
      messageId: typeof serverId === "string" ? serverId : undefined,
      frame,
    });
  }

  #onError(frame: ErrorFrame): void {
    const ws = this.#ws;
    if (frame.code === "UNKNOWN_CONNECTION" && ws !== undefined) {
      // The server forgot this connection (expired row): only a new one will do.
      ws.close();
      this.#onDrop(ws, 1006, frame.message);
      return;
    }
    const pending = this.#pending.get(frame.clientMessageId ?? "");
    if (pending === undefined) return;
    pending.lastError = `${frame.code}: ${frame.message}`;
    if (!frame.retryable) {
      this.#finish(pending);
      pending.settle.reject(
        new MessageRejectedError(pending.clientMessageId, frame.code, frame.message),
      );
      return;
    }
    this.#armResend(pending, frame.retryAfterMs ?? RETRY_WITHOUT_HINT_MS);
  }

  // --- Delivery bookkeeping -------------------------------------------------------------------

  #transmit(pending: Pending, again: boolean): void {
    const ws = this.#ws;
    if (ws === undefined || ws.readyState !== OPEN) return; // sent after the reconnect
    if (this.#pending.get(pending.clientMessageId) !== pending) return;
    if (pending.sentOn === this.#generation && !again) return;
    ws.send(pending.text);
    pending.sentOn = this.#generation;
    this.#armResend(pending, this.options.resendAfterMs);
  }

  #armResend(pending: Pending, delayMs: number): void {
    clearTimeout(pending.resend);
    pending.resend = setTimeout(() => this.#transmit(pending, true), delayMs);
  }

  #expire(pending: Pending): void {
    if (this.#pending.get(pending.clientMessageId) !== pending) return;
    this.#finish(pending);
    pending.settle.reject(
      new MessageNotAcceptedError(
        pending.clientMessageId,
        this.options.acceptTimeoutMs,
        pending.lastError,
      ),
    );
  }

  #finish(pending: Pending): void {
    clearTimeout(pending.deadline);
    clearTimeout(pending.resend);
    this.#pending.delete(pending.clientMessageId);
    this.#outcomes.set(pending.clientMessageId, pending.settle.promise);
    if (this.#outcomes.size > REMEMBERED_OUTCOMES) {
      const oldest = this.#outcomes.keys().next();
      if (!oldest.done) this.#outcomes.delete(oldest.value);
    }
  }

  // --- Plumbing -------------------------------------------------------------------------------

  #emit<K extends keyof ChatClientEventMap>(
    type: K,
    detail: ChatClientEventMap[K]["detail"],
  ): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #checkUsable(): void {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#closing) throw new ClientClosedError("the client is closed");
    if (!this.#started) throw new ClientUsageError("call connect() before sending");
  }

  /** Fail what is pending and every waiting `ask` / `receiveAnswer` with `error`. */
  #stop(error: ChatClientError): void {
    this.#detach();
    for (const pending of [...this.#pending.values()]) {
      this.#finish(pending);
      pending.settle.reject(error);
    }
    for (const reply of this.#askWaiters.values()) reply.reject(error);
    this.#askWaiters.clear();
    for (const waiters of this.#inboxWaiters.values()) {
      for (const waiter of waiters) waiter.reject(error);
    }
    this.#inboxWaiters.clear();
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function withTimeout<T>(value: T | Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([value, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
