/**
 * Our small graphql-transport-ws client (the protocol of the `graphql-ws` library):
 * connection_init with a payload, subscribe / next / error / complete, ping / pong, and
 * automatic reconnection with exponential back-off. Active subscriptions are sent again after
 * every reconnect; a subscription's `variables` may be a function, so a resume cursor is read
 * at the moment of (re)subscribing.
 *
 *   const client = new SubscriptionClient(url, { connectionParams: () => ({ Authorization }) });
 *   const stop = client.subscribe({ query, variables: () => ({ after }) }, { next, complete });
 */

const PROTOCOL = "graphql-transport-ws";
/** Close codes after which retrying cannot help: bad message, forbidden, wrong subprotocol. */
const FATAL_CLOSE_CODES = new Set([4400, 4403, 4406]);

export class SubscriptionClient {
  #url;
  #options;
  #socket = null;
  #subs = new Map();
  #nextId = 1;
  #attempt = 0;
  #timers = { reconnect: null, ack: null, ping: null, pong: null };
  #state = "idle";
  #listeners = new Set();
  #disposed = false;
  /** How many times a connection was acknowledged (1 = first connect, 2+ = reconnects). */
  connections = 0;

  constructor(url, options = {}) {
    this.#url = url;
    this.#options = {
      connectionParams: () => ({}),
      minDelayMs: 500,
      maxDelayMs: 15000,
      pingIntervalMs: 15000,
      pongTimeoutMs: 6000,
      ackTimeoutMs: 10000,
      ...options,
    };
  }

  /** idle | connecting | open | reconnecting | closed */
  get state() {
    return this.#state;
  }

  /** `fn(state, detail)` on every state change; detail has the close code when closed. */
  onStateChange(fn) {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Start an operation; returns a function that stops it. */
  subscribe(payload, sink) {
    const id = String(this.#nextId++);
    this.#subs.set(id, { payload, sink });
    if (this.#state === "open") this.#sendSubscribe(id);
    else if (!this.#socket && this.#state !== "reconnecting") this.#connect();
    return () => this.#unsubscribe(id);
  }

  /** Skip the back-off wait (e.g. when the browser says it is online again). */
  reconnectNow() {
    if (this.#socket || this.#state !== "reconnecting") return;
    clearTimeout(this.#timers.reconnect);
    this.#connect();
  }

  /** Lose the socket the way a network failure would: the client reconnects and resumes. */
  drop() {
    this.#abandon(4000, "dropped");
  }

  /** Close for good (sign-out). */
  dispose() {
    this.#disposed = true;
    this.#subs.clear();
    this.#abandon(1000, "disposed");
  }

  #setState(state, detail = {}) {
    this.#state = state;
    for (const listener of this.#listeners) listener(state, detail);
  }

  #connect() {
    this.#setState(this.connections ? "reconnecting" : "connecting");
    const socket = new WebSocket(this.#url, PROTOCOL);
    this.#socket = socket;
    socket.onopen = () => this.#onOpen();
    socket.onmessage = (event) => this.#onMessage(event.data);
    socket.onclose = (event) => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#onClosed(event.code);
    };
    socket.onerror = () => {}; // a close event always follows
  }

  #onOpen() {
    this.#send({ type: "connection_init", payload: this.#options.connectionParams() });
    this.#timers.ack = setTimeout(() => this.#abandon(4504, "no ack"), this.#options.ackTimeoutMs);
  }

  #onMessage(data) {
    clearTimeout(this.#timers.pong); // any message proves the connection is alive
    this.#timers.pong = null;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    const handler = this.#handlers[message.type];
    if (handler) handler(message);
  }

  #handlers = {
    connection_ack: () => this.#onAck(),
    ping: () => this.#send({ type: "pong" }),
    pong: () => {},
    next: (m) => this.#subs.get(m.id)?.sink.next?.(m.payload),
    error: (m) => this.#finish(m.id, (sink) => sink.error?.(m.payload)),
    complete: (m) => this.#finish(m.id, (sink) => sink.complete?.()),
  };

  #onAck() {
    clearTimeout(this.#timers.ack);
    this.#attempt = 0;
    this.connections += 1;
    this.#setState("open", { connections: this.connections });
    this.#timers.ping = setInterval(() => this.#ping(), this.#options.pingIntervalMs);
    for (const id of this.#subs.keys()) this.#sendSubscribe(id);
  }

  #ping() {
    this.#send({ type: "ping" });
    this.#timers.pong ??= setTimeout(
      () => this.#abandon(4408, "no pong"),
      this.#options.pongTimeoutMs,
    );
  }

  #sendSubscribe(id) {
    const { payload } = this.#subs.get(id);
    const variables =
      typeof payload.variables === "function" ? payload.variables() : payload.variables;
    this.#send({ id, type: "subscribe", payload: { ...payload, variables } });
  }

  #unsubscribe(id) {
    if (!this.#subs.delete(id)) return;
    if (this.#state === "open") this.#send({ id, type: "complete" });
  }

  #finish(id, notify) {
    const sub = this.#subs.get(id);
    if (!sub) return;
    this.#subs.delete(id);
    notify(sub.sink);
  }

  #send(message) {
    if (this.#socket?.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(message));
  }

  /** Detach from the current socket at once (a dead one may take long to report its close). */
  #abandon(code, reason) {
    const socket = this.#socket;
    if (socket) {
      this.#socket = null;
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(code === 1000 ? 1000 : 4000, reason);
      } catch {
        // already closing
      }
    }
    this.#onClosed(code);
  }

  #onClosed(code) {
    for (const name of ["ack", "pong", "reconnect"]) clearTimeout(this.#timers[name]);
    clearInterval(this.#timers.ping);
    this.#timers = { reconnect: null, ack: null, ping: null, pong: null };
    if (this.#disposed || FATAL_CLOSE_CODES.has(code)) {
      this.#setState("closed", { code });
    } else if (this.#subs.size === 0) {
      this.#setState("idle", { code });
    } else {
      this.#scheduleReconnect(code);
    }
  }

  #scheduleReconnect(code) {
    const { minDelayMs, maxDelayMs } = this.#options;
    const base = Math.min(maxDelayMs, minDelayMs * 2 ** this.#attempt);
    this.#attempt += 1;
    const delay = base * (0.75 + Math.random() * 0.5); // jitter: clients do not return in step
    this.#setState("reconnecting", { code, delay });
    this.#timers.reconnect = setTimeout(() => this.#connect(), delay);
  }
}
