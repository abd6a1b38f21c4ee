// The client against a fake socket: backoff, refused tokens, instance id, re-send, reassembly,
// size limits.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  AnswerAssembler,
  AuthenticationError,
  Backoff,
  ChatClient,
  ChatClientError,
  ChatMessageTooLargeError,
  ClientUsageError,
  ConnectError,
  INSTANCE_ID_PATTERN,
  INSTANCE_QUERY_PARAMETER,
  InvalidMessageError,
  MAX_FRAME_BYTES,
  MessageNotAcceptedError,
  MessageRejectedError,
} from "../dist/rag-websocket.js";

const URL_ = "ws://gateway.test/dev";

/** A WebSocket the test plays the server of: open, refuse, receive frames, drop. */
class FakeSocket {
  static instances = [];
  readyState = 0;
  onopen = null;
  onclose = null;
  onerror = null;
  onmessage = null;
  sent = [];

  constructor(url) {
    this.url = new URL(url);
    FakeSocket.instances.push(this);
  }
  static last() {
    return FakeSocket.instances[FakeSocket.instances.length - 1];
  }
  get token() {
    return this.url.searchParams.get("token");
  }
  get instanceId() {
    return this.url.searchParams.get(INSTANCE_QUERY_PARAMETER);
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  /** What a browser shows for a refused handshake (401, 403, 500...): error, then close 1006. */
  refuse() {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code: 1006, reason: "" });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  send(text) {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
  receive(frame) {
    this.onmessage?.({ data: JSON.stringify({ timestamp: "2026-01-01T00:00:00.000Z", ...frame }) });
  }
  chats() {
    return this.sent.filter((message) => message.action === "chat_message");
  }
}

/** Plays the server for each new socket: `behaviour(socket)` runs when the client creates it. */
function fakeServer(behaviour) {
  FakeSocket.instances = [];
  return class extends FakeSocket {
    constructor(url) {
      super(url);
      queueMicrotask(() => behaviour(this));
    }
  };
}

const fast = {
  reconnectInitialDelayMs: 5,
  reconnectMaxDelayMs: 20,
  openTimeoutMs: 500,
};

function until(predicate, what, timeoutMs = 2000) {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (predicate()) resolve();
      else if (Date.now() - started > timeoutMs) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(check, 2);
    };
    check();
  });
}

function record(client, ...types) {
  const events = [];
  for (const type of types) client.addEventListener(type, (event) => events.push([type, event.detail]));
  return events;
}

function accept(socket, clientMessageId, conversationId = "c1") {
  socket.receive({ type: "system", event: "accepted", data: { clientMessageId, conversationId, messageId: "m" } });
}

function chunk(conversationId, messageId, sequence, content, extra = {}) {
  return { type: "chat_response", conversationId, messageId, sequence, content, done: false, metadata: {}, ...extra };
}

describe("Backoff", () => {
  it("draws full jitter under a doubling ceiling capped at the maximum", () => {
    const backoff = new Backoff(250, 2000, () => 0.999999);
    const delays = Array.from({ length: 6 }, () => backoff.next());
    const ceilings = [250, 500, 1000, 2000, 2000, 2000];
    delays.forEach((delay, n) => {
      assert.ok(delay < ceilings[n] && delay > ceilings[n] * 0.99, `attempt ${n}: ${delay}`);
    });
    backoff.reset();
    assert.ok(backoff.next() < 250, "reset starts the series over");
    assert.equal(new Backoff(250, 2000, () => 0).next(), 0, "the lower bound is zero");
  });

  it("rejects a cap below the initial delay", () => {
    assert.throws(() => new Backoff(500, 100), RangeError);
  });
});

describe("connect", () => {
  it("opens with a fresh token from getToken in the query string", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket });
    let calls = 0;
    await client.connect(URL_, async () => `token-${++calls}`);
    assert.equal(FakeSocket.last().token, "token-1");
    assert.ok(client.connected);
    await client.close();
  });

  it("rejects with AuthenticationError when handshakes are refused while the server answers", async () => {
    const WebSocket = fakeServer((socket) => socket.refuse());
    const probed = [];
    const client = new ChatClient({
      ...fast,
      WebSocket,
      probe: async (url) => (probed.push(url), true),
    });
    let calls = 0;
    await assert.rejects(
      client.connect(`${URL_}?x=1`, () => `t${++calls}`),
      AuthenticationError,
    );
    assert.equal(calls, 3, "a fresh token for each of the three attempts");
    assert.deepEqual(new Set(probed), new Set(["http://gateway.test/dev"]), "no token in the probe");
  });

  it("counts a handshake that only fires error (Node 20's WebSocket) as refused", async () => {
    const WebSocket = fakeServer((socket) => {
      socket.readyState = 3;
      socket.onerror?.({});
    });
    const client = new ChatClient({ ...fast, WebSocket, probe: async () => true });
    await assert.rejects(client.connect(URL_, "t"), AuthenticationError);
    assert.equal(FakeSocket.instances.length, 3);
  });

  it("rejects with ConnectError at once when the server does not answer at all", async () => {
    const WebSocket = fakeServer((socket) => socket.refuse());
    const client = new ChatClient({ ...fast, WebSocket, probe: async () => false });
    await assert.rejects(client.connect(URL_, "t"), ConnectError);
    assert.equal(FakeSocket.instances.length, 1);
  });

  it("rejects with ConnectError when getToken throws", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket });
    await assert.rejects(
      client.connect(URL_, () => {
        throw new Error("no session");
      }),
      (error) => error instanceof ConnectError && /no session/.test(error.message),
    );
  });

  it("raises only ChatClientErrors for calls out of order and unusable URLs", async () => {
    // As the Python client: one catch of ChatClientError covers everything the client throws.
    const WebSocket = fakeServer((socket) => socket.open());
    const usage = (error) => error instanceof ClientUsageError && error instanceof ChatClientError;
    const client = new ChatClient({ ...fast, WebSocket });
    assert.throws(() => client.sendChat("c1", "before connect()"), usage);
    await assert.rejects(new ChatClient({ ...fast, WebSocket }).connect("not a url", "t"), usage);
    await assert.rejects(new ChatClient({ ...fast, WebSocket }).connect("http://h/dev", "t"), usage);
    await client.connect(URL_, "t");
    await assert.rejects(client.connect(URL_, "t"), usage);
    await client.close();
  });
});

describe("reconnect", () => {
  it("comes back after a drop, the first attempt within the initial delay, and re-sends", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ WebSocket, resendAfterMs: 60_000 });
    const events = record(client, "disconnected", "reconnecting", "reconnected");
    let calls = 0;
    await client.connect(URL_, () => `t${++calls}`);
    const first = FakeSocket.last();
    const id = client.sendChat("c1", "hello");
    assert.equal(first.chats()[0].clientMessageId, id);
    first.drop(1001);
    await until(() => client.connected && FakeSocket.instances.length === 2, "the reconnect");
    const second = FakeSocket.last();
    assert.equal(second.token, "t2", "a fresh token on reconnect");
    assert.deepEqual(second.chats().map((m) => m.clientMessageId), [id], "re-sent with the same id");
    const [, reconnecting] = events.find(([type]) => type === "reconnecting");
    assert.ok(reconnecting.delayMs <= 250, `first delay ${reconnecting.delayMs} ms`);
    assert.deepEqual(events.map(([type]) => type), ["disconnected", "reconnecting", "reconnected"]);
    accept(second, id);
    const accepted = await client.waitAccepted(id);
    assert.equal(accepted.clientMessageId, id);
    await client.close();
  });

  it("stops with auth_failed after refusals that went on for the window, never retrying for ever", async () => {
    let refuse = false;
    const WebSocket = fakeServer((socket) => (refuse ? socket.refuse() : socket.open()));
    const windowMs = 150;
    const options = { ...fast, WebSocket, probe: async () => true, authFailureWindowMs: windowMs };
    const client = new ChatClient(options);
    const events = record(client, "reconnect_failed", "auth_failed", "closed");
    await client.connect(URL_, "t");
    const id = client.sendChat("c1", "hello");
    refuse = true;
    const dropped = Date.now();
    FakeSocket.last().drop();
    await assert.rejects(client.waitAccepted(id), AuthenticationError);
    assert.ok(Date.now() - dropped >= windowMs, "not before the refusals lasted the window");
    const sockets = FakeSocket.instances.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(FakeSocket.instances.length, sockets, "no attempt after auth_failed");
    const types = events.map(([type]) => type);
    assert.equal(types.at(-1), "auth_failed");
    assert.ok(types.length > 4, "more attempts than authFailureAttempts, within the window");
    assert.ok(types.slice(0, -1).every((type) => type === "reconnect_failed"));
    assert.ok(client.failure instanceof AuthenticationError);
    assert.throws(() => client.sendChat("c1", "again"), AuthenticationError);
  });

  it("rides out refusals shorter than the window, as a 429 storm's, and delivers", async () => {
    // A browser sees API Gateway's 429 (many clients reconnecting at once) exactly as a refused
    // token: more refusals than authFailureAttempts, then the throttle lets it through.
    let refusals = 0;
    const WebSocket = fakeServer((socket) => {
      if (refusals > 0 && refusals < 6) {
        refusals += 1;
        socket.refuse();
      } else socket.open();
    });
    const client = new ChatClient({ ...fast, WebSocket, probe: async () => true });
    const events = record(client, "reconnect_failed", "reconnected", "auth_failed");
    await client.connect(URL_, "t");
    const id = client.sendChat("c1", "hello");
    refusals = 1;
    FakeSocket.last().drop();
    await until(() => client.connected && FakeSocket.instances.length === 7, "the reconnect");
    const types = events.map(([type]) => type);
    assert.deepEqual(types, [...Array(5).fill("reconnect_failed"), "reconnected"]);
    assert.deepEqual(FakeSocket.last().chats().map((m) => m.clientMessageId), [id]);
    accept(FakeSocket.last(), id);
    assert.equal((await client.waitAccepted(id)).clientMessageId, id);
    await client.close();
  });

  it("keeps trying while the server is unreachable, and resets the refusal count", async () => {
    let mode = "open";
    const WebSocket = fakeServer((socket) => (mode === "open" ? socket.open() : socket.refuse()));
    let reachable = false;
    const client = new ChatClient({ ...fast, WebSocket, probe: async () => reachable });
    const events = record(client, "reconnect_failed", "reconnected", "auth_failed");
    await client.connect(URL_, "t");
    mode = "down";
    FakeSocket.last().drop();
    await until(() => events.length >= 6, "six failed attempts");
    mode = "open";
    await until(() => client.connected, "the reconnect");
    assert.ok(!events.some(([type]) => type === "auth_failed"));
    await client.close();
  });

  it("starts the backoff over only after a connection stayed up", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ WebSocket, random: () => 0.999, stableAfterMs: 60_000 });
    const delays = [];
    client.addEventListener("reconnecting", (event) => delays.push(event.detail.delayMs));
    await client.connect(URL_, "t");
    for (let n = 1; n <= 3; n += 1) {
      FakeSocket.last().drop();
      await until(() => FakeSocket.instances.length === n + 1 && client.connected, "reconnect");
    }
    assert.ok(delays[2] > 500, `an unstable connection keeps backing off: ${delays}`);
    await client.close();
  });
});

describe("instance id", () => {
  // The server closes the connection the same user and instance opened before: the id must be the
  // same on every (re)connect of one client object and differ between client objects.
  const pattern = new RegExp(INSTANCE_ID_PATTERN);

  it("sends a random id on connect, in place of any instanceId in the given URL", async (t) => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket });
    t.after(() => client.close());
    assert.match(client.instanceId, pattern);
    assert.match(client.instanceId, /^[0-9a-f]{32}$/, "128 bits as hex");
    await client.connect(`${URL_}?${INSTANCE_QUERY_PARAMETER}=stale&x=1`, "t");
    const socket = FakeSocket.last();
    assert.equal(socket.instanceId, client.instanceId);
    assert.deepEqual(socket.url.searchParams.getAll(INSTANCE_QUERY_PARAMETER), [client.instanceId]);
    assert.equal(socket.url.searchParams.get("x"), "1");
  });

  it("keeps the same id on every reconnect, with a fresh token each time", async (t) => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket });
    t.after(() => client.close());
    let calls = 0;
    await client.connect(URL_, () => `t${++calls}`);
    for (let n = 1; n <= 2; n += 1) {
      FakeSocket.last().drop();
      await until(() => FakeSocket.instances.length === n + 1 && client.connected, "reconnect");
    }
    const sockets = FakeSocket.instances;
    assert.deepEqual(sockets.map((socket) => socket.token), ["t1", "t2", "t3"]);
    assert.deepEqual(sockets.map((socket) => socket.instanceId), Array(3).fill(client.instanceId));
  });

  it("gives two client objects (two tabs) different ids", async (t) => {
    const WebSocket = fakeServer((socket) => socket.open());
    const one = new ChatClient({ ...fast, WebSocket });
    const two = new ChatClient({ ...fast, WebSocket });
    t.after(() => Promise.all([one.close(), two.close()]));
    assert.notEqual(one.instanceId, two.instanceId);
    await one.connect(URL_, "t");
    await two.connect(URL_, "t");
    const [first, second] = FakeSocket.instances;
    assert.deepEqual([first.instanceId, second.instanceId], [one.instanceId, two.instanceId]);
  });

  it("uses a given instanceId and refuses one outside INSTANCE_ID_PATTERN", async (t) => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket, instanceId: "tab_1-A" });
    t.after(() => client.close());
    assert.equal(client.instanceId, "tab_1-A");
    await client.connect(URL_, "t");
    assert.equal(FakeSocket.last().instanceId, "tab_1-A");
    assert.equal(new ChatClient({ WebSocket, instanceId: "x".repeat(64) }).instanceId.length, 64);
    for (const bad of ["", "has space", "x".repeat(65), "a/b", "é", 42]) {
      assert.throws(
        () => new ChatClient({ WebSocket, instanceId: bad }),
        (e) =>
          e instanceof RangeError &&
          e.message.includes(`option instanceId must match ${INSTANCE_ID_PATTERN}`) &&
          /Leave it out for a random id/.test(e.message),
        `instanceId ${JSON.stringify(bad)}`,
      );
    }
  });
});

describe("keep-alive", () => {
  it("pings, and replaces a connection that answers nothing within the pong timeout", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket, pingIntervalMs: 20, pongTimeoutMs: 30 });
    const events = record(client, "disconnected");
    await client.connect(URL_, "t");
    const first = FakeSocket.last();
    await until(() => first.sent.some((m) => m.action === "ping"), "a ping");
    await until(() => FakeSocket.instances.length === 2 && client.connected, "the replacement");
    assert.match(events[0][1].reason, /no answer to ping/);
    await client.close();
  });
});

describe("delivery", () => {
  it("re-sends after a retryable error, after retryAfterMs", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket, resendAfterMs: 60_000 });
    await client.connect(URL_, "t");
    const socket = FakeSocket.last();
    const id = client.sendChat("c1", "hello");
    socket.receive({ type: "error", code: "RATE_LIMITED", message: "slow down", retryable: true, retryAfterMs: 10, clientMessageId: id });
    await until(() => socket.chats().length === 2, "the re-send");
    assert.equal(socket.chats()[1].clientMessageId, id);
    accept(socket, id);
    await client.waitAccepted(id);
    await client.close();
  });

  it("re-sends when nothing answered within resendAfterMs", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket, resendAfterMs: 10 });
    await client.connect(URL_, "t");
    const socket = FakeSocket.last();
    const id = client.sendChat("c1", "hello");
    await until(() => socket.chats().length >= 2, "the re-send");
    accept(socket, id);
    await client.waitAccepted(id);
    await client.close();
  });

  it("fails with MessageRejectedError on a non-retryable error", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket });
    await client.connect(URL_, "t");
    const id = client.sendChat("c1", "hello");
    FakeSocket.last().receive({ type: "error", code: "BAD_REQUEST", message: "no", retryable: false, clientMessageId: id });
    await assert.rejects(client.waitAccepted(id), (e) => e instanceof MessageRejectedError && e.code === "BAD_REQUEST");
    await client.close();
  });

  it("fails with MessageNotAcceptedError after acceptTimeoutMs", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket, acceptTimeoutMs: 30 });
    await client.connect(URL_, "t");
    const id = client.sendChat("c1", "hello");
    await assert.rejects(client.waitAccepted(id), MessageNotAcceptedError);
    await client.close();
  });

  it("refuses an acceptTimeoutMs past SQS's deduplication window, as the Python client", () => {
    // A message re-sent after the 5-minute window could be queued twice (SQS FIFO forgets its
    // deduplication id); the Python client's accept_timeout has the same bound.
    const WebSocket = fakeServer((socket) => socket.open());
    assert.throws(
      () => new ChatClient({ WebSocket, acceptTimeoutMs: 300_001 }),
      (e) => e instanceof RangeError && /acceptTimeoutMs .* 300 s deduplication window/.test(e.message),
    );
    assert.doesNotThrow(() => new ChatClient({ WebSocket, acceptTimeoutMs: 300_000 }));
  });

  it("refuses content over the 32 KB frame limit before sending anything", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket });
    await client.connect(URL_, "t");
    const socket = FakeSocket.last();
    assert.throws(
      () => client.sendChat("c1", "é".repeat(MAX_FRAME_BYTES / 2)),
      (error) => error instanceof ChatMessageTooLargeError && error.size > MAX_FRAME_BYTES,
    );
    assert.throws(() => client.sendChat("c1", ""), InvalidMessageError);
    assert.throws(() => client.sendChat("bad id", "x"), InvalidMessageError);
    assert.deepEqual(socket.chats(), []);
    client.sendChat("c1", "x".repeat(MAX_FRAME_BYTES - 200));
    assert.equal(socket.chats().length, 1, "just under the limit is sent");
    await client.close();
  });
});

describe("answers", () => {
  it("names the question of the last chunk that names one, as the Python client", () => {
    const assembler = new AnswerAssembler(4096);
    assembler.add(chunk("c1", "a", 0, "x", { inReplyTo: "first" }));
    assembler.add(chunk("c1", "a", 1, "y", { inReplyTo: "second" }));
    const done = assembler.add(chunk("c1", "a", 2, "z", { inReplyTo: "", done: true }));
    assert.equal(done.answer?.inReplyTo, "second");
  });

  it("holds unfinished answers within a byte limit, giving up the oldest", () => {
    // As the Python client: a responder that never sends done, or answers too big to hold,
    // cannot grow the client without end (UTF-8 bytes: "é" is 2).
    const assembler = new AnswerAssembler(4096, { maxUnfinishedBytes: 10 });
    assert.equal(assembler.add(chunk("c1", "old", 0, "éééé")).duplicate, false);
    assert.equal(assembler.unfinishedBytes, 8);
    assembler.add(chunk("c1", "new", 0, "abcd")); // 12 bytes: "old" is given up
    assert.equal(assembler.unfinishedBytes, 4);
    const late = assembler.add(chunk("c1", "old", 1, "!", { done: true }));
    assert.deepEqual(late, { duplicate: false, text: "", answer: undefined }); // never completes
    assert.equal(assembler.unfinishedBytes, 4);
    const done = assembler.add(chunk("c1", "new", 1, "e", { done: true }));
    assert.equal(done.answer?.content, "abcde");
    assert.equal(assembler.unfinishedBytes, 0);
    assert.throws(() => new AnswerAssembler(4096, { maxUnfinishedBytes: 0 }), RangeError);
  });

  it("reassembles chunks by sequence and drops duplicates", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket });
    await client.connect(URL_, "t");
    const socket = FakeSocket.last();
    const texts = [];
    client.addEventListener("chunk", (event) => texts.push(event.detail.text));
    const answer = client.ask("c1", "question");
    await until(() => socket.chats().length === 1, "the question");
    const id = socket.chats()[0].clientMessageId;
    accept(socket, id);
    socket.receive(chunk("c1", "a1", 1, "world", { inReplyTo: id }));
    socket.receive(chunk("c1", "a1", 0, "hello ", { inReplyTo: id }));
    socket.receive(chunk("c1", "a1", 0, "hello ", { inReplyTo: id }));
    socket.receive(chunk("c1", "a1", 2, "!", { inReplyTo: id, done: true, metadata: { sources: 2 } }));
    socket.receive(chunk("c1", "a1", 1, "world", { inReplyTo: id }));
    const result = await answer;
    assert.equal(result.content, "hello world!");
    assert.deepEqual(result.metadata, { sources: 2 });
    assert.equal(result.inReplyTo, id);
    assert.deepEqual(texts, ["hello world", "!"]);
    assert.equal(client.duplicateChunksDropped, 2);
    await client.close();
  });

  it("keeps unclaimed answers for the 1024 conversations most recently answered", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket });
    await client.connect(URL_, "t");
    const socket = FakeSocket.last();
    socket.receive(chunk("c0", "first", 0, "forgotten", { done: true }));
    for (let n = 1; n <= 1024; n += 1) socket.receive(chunk(`c${n}`, "a", 0, "x", { done: true }));
    socket.receive(chunk("c0", "second", 0, "kept", { done: true }));
    assert.equal((await client.receiveAnswer("c0")).content, "kept");
    assert.equal((await client.receiveAnswer("c1024")).content, "x");
    await client.close();
  });

  it("gives each ask the answer to its own question", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket });
    await client.connect(URL_, "t");
    const socket = FakeSocket.last();
    const first = client.ask("c1", "first");
    const second = client.ask("c1", "second");
    await until(() => socket.chats().length === 2, "both questions");
    const [one, two] = socket.chats().map((m) => m.clientMessageId);
    accept(socket, one);
    accept(socket, two);
    socket.receive(chunk("c1", "b", 0, "to second", { inReplyTo: two, done: true }));
    socket.receive(chunk("c1", "a", 0, "to first", { inReplyTo: one, done: true }));
    assert.equal((await first).content, "to first");
    assert.equal((await second).content, "to second");
    await client.close();
  });

  it("an answer without inReplyTo reaches receiveAnswer, never an ask (as the Python client)", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket });
    await client.connect(URL_, "t");
    const socket = FakeSocket.last();
    const controller = new AbortController();
    const settled = [];
    const asks = ["first", "second"].map((content) =>
      client.ask("c1", content, { signal: controller.signal }).then((answer) => settled.push(answer.content)),
    );
    await until(() => socket.chats().length === 2, "both questions");
    for (const { clientMessageId } of socket.chats()) accept(socket, clientMessageId);
    // A responder that names no question: the answers could be to either, so no ask takes them.
    socket.receive(chunk("c1", "b", 0, "maybe to second", { done: true }));
    socket.receive(chunk("c1", "a", 0, "maybe to first", { done: true }));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(settled, [], "no ask resolved to an answer without inReplyTo");
    assert.equal((await client.receiveAnswer("c1")).content, "maybe to second");
    assert.equal((await client.receiveAnswer("c1")).content, "maybe to first");
    controller.abort(new Error("stopped waiting"));
    for (const ask of asks) await assert.rejects(ask, { message: "stopped waiting" });
    await client.close();
  });

  it("a late answer to an ask that stopped waiting never reaches the next ask", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket });
    await client.connect(URL_, "t");
    const socket = FakeSocket.last();
    const controller = new AbortController();
    const first = client.ask("c1", "first", { signal: controller.signal });
    await until(() => socket.chats().length === 1, "the first question");
    const one = socket.chats()[0].clientMessageId;
    accept(socket, one);
    controller.abort(new Error("timed out"));
    await assert.rejects(first, { message: "timed out" });
    const second = client.ask("c1", "second");
    await until(() => socket.chats().length === 2, "the second question");
    const two = socket.chats()[1].clientMessageId;
    accept(socket, two);
    socket.receive(chunk("c1", "a", 0, "late, to first", { inReplyTo: one, done: true }));
    socket.receive(chunk("c1", "x", 0, "late, unnamed", { done: true }));
    socket.receive(chunk("c1", "b", 0, "to second", { inReplyTo: two, done: true }));
    assert.equal((await second).content, "to second");
    assert.equal((await client.receiveAnswer("c1")).content, "late, to first");
    assert.equal((await client.receiveAnswer("c1")).content, "late, unnamed");
    await client.close();
  });

  it("close() while connect() waits for the handshake leaves no connection behind", async () => {
    let socket;
    const WebSocket = fakeServer((created) => (socket = created));
    const client = new ChatClient({ ...fast, WebSocket });
    const connecting = client.connect(URL_, "t");
    await until(() => socket !== undefined, "the handshake");
    await client.close();
    socket.open(); // the handshake completes after close()
    await assert.rejects(connecting, { name: "ClientClosedError" });
    assert.equal(socket.readyState, 3, "the late connection is closed");
    assert.equal(client.connected, false);
  });

  it("close() fails what is pending with ClientClosedError and emits closed", async () => {
    const WebSocket = fakeServer((socket) => socket.open());
    const client = new ChatClient({ ...fast, WebSocket });
    const events = record(client, "closed");
    await client.connect(URL_, "t");
    const answer = client.ask("c1", "question");
    await client.close();
    await assert.rejects(answer, { name: "ClientClosedError" });
    assert.deepEqual(events.map(([type]) => type), ["closed"]);
  });
});
