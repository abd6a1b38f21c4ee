/**
 * rag-websocket's browser client: `new ChatClient(options?)`, `await client.connect(url,
 * getToken)`, `await client.ask(conversationId, content)`. No runtime dependencies; works in any
 * browser and in Node (with a WebSocket class).
 */

export { ChatClient, DEFAULT_OPTIONS, fetchProbe } from "./client.js";
export type {
  Accepted,
  ChatClientEventMap,
  ChatClientOptions,
  ConnectionDetail,
  SocketFactory,
  SocketLike,
  TokenSource,
} from "./client.js";
export { AnswerAssembler } from "./answers.js";
export type { Answer, ChunkOutcome } from "./answers.js";
export { Backoff } from "./backoff.js";
export {
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
export * from "./protocol.js";
