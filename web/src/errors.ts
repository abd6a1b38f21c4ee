/** What a ChatClient caller can catch: one base class, one subclass per thing to act on. */

import { MAX_FRAME_BYTES } from "./protocol.js";

/** Base class of every error the client raises on purpose. */
export class ChatClientError extends Error {
  override name = "ChatClientError";
}

/**
 * The server refused the token on the WebSocket handshake. A browser never sees the HTTP status
 * of a refused handshake, so the client concludes this when `authFailureAttempts` handshakes in a
 * row, each with a fresh token from `getToken`, failed before opening while the server answered
 * HTTP, on a reconnect for at least `authFailureWindowMs` (see "Browser client" in
 * docs/client.md). Never retried: get a valid token and connect
 * again.
 */
export class AuthenticationError extends ChatClientError {
  override name = "AuthenticationError";
  constructor(readonly attempts: number) {
    super(
      `the server refused the WebSocket handshake ${attempts} time(s) in a row with a fresh ` +
        "token while it answered HTTP: the token is not accepted; check that it is valid, " +
        "unexpired and issued for this API",
    );
  }
}

/**
 * A call the client cannot serve: `connect()` twice, sending before `connect()`, or a URL that is
 * not `ws://` or `wss://`. Nothing was sent.
 */
export class ClientUsageError extends ChatClientError {
  override name = "ClientUsageError";
}

/** The first connection could not be opened (server unreachable, timeout, token provider). */
export class ConnectError extends ChatClientError {
  override name = "ConnectError";
}

/** The client was closed (or stopped on an authentication error) before this completed. */
export class ClientClosedError extends ChatClientError {
  override name = "ClientClosedError";
}

/**
 * A chat message got no `system/accepted` within `acceptTimeoutMs`. It may or may not have been
 * queued: sending it again with the same `clientMessageId` is safe (the queue deduplicates).
 */
export class MessageNotAcceptedError extends ChatClientError {
  override name = "MessageNotAcceptedError";
  constructor(
    readonly clientMessageId: string,
    readonly timeoutMs: number,
    readonly lastError: string | undefined,
  ) {
    super(
      `chat message ${clientMessageId} was not accepted within ${timeoutMs} ms` +
        (lastError ? `; last error: ${lastError}` : ""),
    );
  }
}

/** The server answered a chat message with a non-retryable `error` frame. */
export class MessageRejectedError extends ChatClientError {
  override name = "MessageRejectedError";
  constructor(
    readonly clientMessageId: string,
    readonly code: string,
    readonly serverMessage: string,
  ) {
    super(`chat message ${clientMessageId} was rejected: ${code}: ${serverMessage}`);
  }
}

/**
 * A chat message whose JSON is over API Gateway's 32 KB frame limit. A browser sends each
 * message as one frame (it cannot fragment), so it is refused before sending; nothing was sent.
 */
export class ChatMessageTooLargeError extends ChatClientError {
  override name = "ChatMessageTooLargeError";
  readonly limit = MAX_FRAME_BYTES;
  constructor(readonly size: number) {
    super(
      `the chat message is ${size} bytes as JSON, over API Gateway's ${MAX_FRAME_BYTES}-byte ` +
        "frame limit (a browser sends each message as one frame); send less content",
    );
  }
}

/** A chat message that breaks the protocol's rules (empty content, a bad id); nothing was sent. */
export class InvalidMessageError extends ChatClientError {
  override name = "InvalidMessageError";
}
