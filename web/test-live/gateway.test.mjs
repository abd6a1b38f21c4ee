// The client from Node against the real local gateway (started by tests/web/test_node_client.py,
// which passes its address in RAG_WEBSOCKET_HTTP_URL and drops the connections of the user
// named in RAG_WEBSOCKET_DROP_USER once, through the management API).
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  AuthenticationError,
  ChatClient,
  ChatMessageTooLargeError,
  MAX_FRAME_BYTES,
} from "../dist/rag-websocket.js";

const httpUrl = process.env.RAG_WEBSOCKET_HTTP_URL;
const stage = process.env.RAG_WEBSOCKET_STAGE ?? "dev";
const dropUser = process.env.RAG_WEBSOCKET_DROP_USER;
assert.ok(httpUrl, "RAG_WEBSOCKET_HTTP_URL must name the local gateway (run through pytest)");
const wsUrl = `${httpUrl.replace(/^http/, "ws")}/${stage}`;

async function token(user) {
  const response = await fetch(`${httpUrl}/_local/token?user=${encodeURIComponent(user)}`);
  assert.equal(response.status, 200);
  return (await response.json()).token;
}

function once(client, type) {
  return new Promise((resolve) =>
    client.addEventListener(type, (event) => resolve(event.detail), { once: true }),
  );
}

describe("against the local gateway", () => {
  it("asks a question and gets the whole streamed answer", async () => {
    const client = new ChatClient();
    await client.connect(wsUrl, () => token("node-asker"));
    try {
      const chunks = [];
      client.addEventListener("chunk", (event) => chunks.push(event.detail.text));
      const answer = await client.ask("node-conv", "What is RAG from Node?", {
        signal: AbortSignal.timeout(20_000),
      });
      assert.match(answer.content, /You asked: "What is RAG from Node\?"/);
      assert.ok(chunks.length > 1, "the answer arrived as a stream of chunks");
      assert.equal(chunks.join(""), answer.content);
      assert.equal(answer.metadata.responder, "local-demo");
    } finally {
      await client.close();
    }
  });

  it("rejects a refused token with AuthenticationError, within seconds", async () => {
    const client = new ChatClient();
    const started = Date.now();
    let calls = 0;
    await assert.rejects(
      client.connect(wsUrl, () => `not-a-jwt-${++calls}`),
      AuthenticationError,
    );
    assert.equal(calls, client.options.authFailureAttempts, "one fresh token per attempt");
    assert.ok(Date.now() - started < 10_000);
  });

  it("refuses content over the frame limit before sending", async () => {
    const client = new ChatClient();
    await client.connect(wsUrl, () => token("node-big"));
    try {
      assert.throws(
        () => client.sendChat("node-conv", "x".repeat(MAX_FRAME_BYTES)),
        ChatMessageTooLargeError,
      );
    } finally {
      await client.close();
    }
  });

  it("comes back after the server deletes the connection, and still delivers", async () => {
    assert.ok(dropUser, "RAG_WEBSOCKET_DROP_USER names the user whose connection is deleted");
    const client = new ChatClient();
    const disconnected = once(client, "disconnected");
    const reconnected = once(client, "reconnected");
    let tokens = 0;
    await client.connect(wsUrl, () => (tokens++, token(dropUser)));
    try {
      await disconnected;
      const { downtimeMs } = await reconnected;
      assert.ok(tokens >= 2, "a fresh token for the reconnect");
      const answer = await client.ask("node-drop", "Still there?", {
        signal: AbortSignal.timeout(20_000),
      });
      assert.match(answer.content, /Still there\?/);
      console.log(`reconnected after ${downtimeMs} ms`);
    } finally {
      await client.close();
    }
  });
});
