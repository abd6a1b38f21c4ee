/**
 * Local mode's chat page (served at `/`): pick a user, chat with the responder, watch the answer
 * stream in and the connection come back after each drop. Everything goes through ChatClient.
 */

import {
  AuthenticationError,
  ChatClient,
  ChatMessageTooLargeError,
  type Answer,
  type ConnectionDetail,
} from "../rag-websocket.js";

type State = "idle" | "connecting" | "connected" | "reconnecting" | "refused" | "closed";

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) throw new Error(`the page has no #${id}`);
  return found as T;
}

const ui = {
  login: element<HTMLFormElement>("login"),
  user: element<HTMLInputElement>("user"),
  state: element<HTMLParagraphElement>("state"),
  stateText: element<HTMLSpanElement>("state-text"),
  messages: element<HTMLOListElement>("messages"),
  typing: element<HTMLParagraphElement>("typing"),
  alert: element<HTMLParagraphElement>("alert"),
  composer: element<HTMLFormElement>("composer"),
  question: element<HTMLTextAreaElement>("question"),
  send: element<HTMLButtonElement>("send"),
  reconnects: element<HTMLElement>("reconnects"),
  downtime: element<HTMLElement>("downtime"),
  duplicates: element<HTMLElement>("duplicates"),
  events: element<HTMLOListElement>("events"),
};

const websocketPath = document.querySelector<HTMLMetaElement>('meta[name="rag-websocket-path"]');
const websocketUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${
  websocketPath?.content ?? "/dev"
}`;
const conversationId = `web-${crypto.randomUUID().slice(0, 8)}`;
let client: ChatClient | undefined;
let reconnects = 0;
const bubbles = new Map<string, HTMLElement>();

function setState(state: State, text: string): void {
  ui.state.dataset["state"] = state;
  ui.stateText.textContent = text;
  const usable = state === "connected" || state === "reconnecting";
  ui.question.disabled = !usable;
  ui.send.disabled = !usable;
}

function showAlert(text: string | undefined): void {
  ui.alert.hidden = text === undefined;
  ui.alert.textContent = text ?? "";
}

function logEvent(kind: string, text: string): void {
  const item = document.createElement("li");
  item.className = `kind-${kind}`;
  const time = document.createElement("time");
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString([], { hour12: false });
  const label = document.createElement("span");
  label.textContent = text;
  item.append(time, label);
  ui.events.prepend(item);
}

function addBubble(role: "user" | "assistant", text: string): HTMLElement {
  ui.messages.querySelector(".empty")?.remove();
  const item = document.createElement("li");
  item.className = `message ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? ui.user.value : "Assistant";
  const body = document.createElement("span");
  body.className = "body";
  body.textContent = text;
  item.append(who, body);
  ui.messages.append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function assistantBubble(messageId: string): HTMLElement {
  let bubble = bubbles.get(messageId);
  if (bubble === undefined) {
    bubble = addBubble("assistant", "");
    bubble.setAttribute("aria-busy", "true");
    bubbles.set(messageId, bubble);
  }
  return bubble;
}

function finishAnswer(answer: Answer): void {
  const bubble = assistantBubble(answer.messageId);
  bubble.querySelector(".body")!.textContent = answer.content;
  bubble.setAttribute("aria-busy", "false");
  bubble.dataset["done"] = "true";
}

function describeDrop(detail: ConnectionDetail): string {
  const code = detail.closeCode === undefined ? "" : ` (close code ${detail.closeCode})`;
  return `Connection lost${code}${detail.reason ? `: ${detail.reason}` : ""}`;
}

async function fetchToken(user: string): Promise<string> {
  const response = await fetch(`/_local/token?user=${encodeURIComponent(user)}`, {
    cache: "no-store",
  });
  const body = (await response.json()) as { token?: string; message?: string };
  if (!response.ok || typeof body.token !== "string") {
    throw new Error(body.message ?? `the token endpoint answered HTTP ${response.status}`);
  }
  return body.token;
}

function refused(user: string, error: AuthenticationError): void {
  setState("refused", "Token refused");
  showAlert(
    `The server refused the token for ${user} (${error.attempts} handshakes in a row, each with ` +
      "a fresh token). The client stopped trying: pick a user and connect again.",
  );
  logEvent("auth_failed", "Token refused: stopped trying");
}

function wire(next: ChatClient, user: string): void {
  next.addEventListener("connected", () => {
    setState("connected", `Connected as ${user}`);
    logEvent("connected", `Connected as ${user}`);
    ui.question.focus();
  });
  next.addEventListener("disconnected", (event) => {
    setState("reconnecting", "Reconnecting…");
    logEvent("disconnected", describeDrop(event.detail));
  });
  next.addEventListener("reconnecting", (event) => {
    const { attempt, delayMs = 0 } = event.detail;
    setState("reconnecting", `Reconnecting (attempt ${attempt})…`);
    logEvent("reconnecting", `Attempt ${attempt} after ${Math.round(delayMs)} ms`);
  });
  next.addEventListener("reconnect_failed", (event) => {
    logEvent("reconnect_failed", `Attempt ${event.detail.attempt} failed`);
  });
  next.addEventListener("reconnected", (event) => {
    const seconds = ((event.detail.downtimeMs ?? 0) / 1000).toFixed(2);
    reconnects += 1;
    ui.reconnects.textContent = String(reconnects);
    ui.downtime.textContent = `${seconds} s`;
    setState("connected", `Connected as ${user}`);
    logEvent("reconnected", `Back after ${seconds} s`);
  });
  next.addEventListener("auth_failed", () => {
    if (next.failure instanceof AuthenticationError) refused(user, next.failure);
  });
  next.addEventListener("closed", () => logEvent("closed", "Closed"));
  next.addEventListener("typing", (event) => {
    ui.typing.hidden = !event.detail.isTyping;
  });
  next.addEventListener("chunk", (event) => {
    const list = ui.messages;
    const following = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const body = assistantBubble(event.detail.frame.messageId).querySelector(".body")!;
    body.textContent = (body.textContent ?? "") + event.detail.text;
    // Keep a growing answer in view, unless the reader scrolled up to read something else.
    if (following) list.scrollTop = list.scrollHeight;
    ui.duplicates.textContent = String(next.duplicateChunksDropped);
  });
  next.addEventListener("frame", () => {
    ui.duplicates.textContent = String(next.duplicateChunksDropped);
  });
  next.addEventListener("answer", (event) => {
    ui.typing.hidden = true;
    finishAnswer(event.detail);
  });
}

async function connectAs(user: string): Promise<void> {
  await client?.close();
  showAlert(undefined);
  const next = new ChatClient();
  client = next;
  wire(next, user);
  setState("connecting", `Connecting as ${user}…`);
  try {
    await next.connect(websocketUrl, () => fetchToken(user));
  } catch (error) {
    if (client !== next) return;
    if (error instanceof AuthenticationError) {
      refused(user, error);
    } else {
      setState("closed", "Not connected");
      showAlert(`Could not connect: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

function ask(content: string): void {
  if (client === undefined) return;
  const bubble = addBubble("user", content);
  client.ask(conversationId, content).catch((error: unknown) => {
    bubble.classList.add("failed");
    const reason = error instanceof Error ? error.message : String(error);
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = error instanceof ChatMessageTooLargeError ? "Too long to send" : "Not sent";
    bubble.append(meta);
    showAlert(reason);
  });
}

ui.login.addEventListener("submit", (event) => {
  event.preventDefault();
  if (ui.login.reportValidity()) void connectAs(ui.user.value);
});

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const content = ui.question.value.trim();
  if (!content) return;
  ui.question.value = "";
  ask(content);
});

// Following a fragment link moves no focus in some browsers: move it to the box itself.
document.querySelector(".skip")?.addEventListener("click", (event) => {
  event.preventDefault();
  ui.question.focus();
});

ui.question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});

const requested = new URLSearchParams(location.search).get("user");
if (requested) ui.user.value = requested;
void connectAs(ui.user.value);
