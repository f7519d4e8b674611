// One WebSocket per tab. It reconnects on any close but 4401 (the session ended), after
// 0.5 s doubling to 10 s, each delay jittered so many tabs do not return at once; after
// 1009 (a frame too big for the server) it says so first.

export const CLOSE_UNAUTHENTICATED = 4401;
// A frame over the server's size limit: the server closes with this and a reason.
export const CLOSE_TOO_BIG = 1009;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;

export class ChatSocket {
  constructor(path, { onOpen, onFrame, onState, onUnauthorized, onTooBig }) {
    this.path = path;
    this.handlers = { onOpen, onFrame, onState, onUnauthorized, onTooBig };
    this.ws = null;
    this.failures = 0;
    this.timer = null;
    window.addEventListener("online", () => this.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.reconnectNow();
    });
  }

  get url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${this.path}`;
  }

  get isOpen() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.handlers.onState(this.failures ? "reconnecting" : "connecting");
    ws.addEventListener("open", () => {
      this.failures = 0;
      this.handlers.onState("open");
      this.handlers.onOpen();
    });
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.handlers.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (event.code === CLOSE_UNAUTHENTICATED) {
        this.handlers.onState("closed");
        this.handlers.onUnauthorized();
        return;
      }
      this.handlers.onState("reconnecting");
      if (event.code === CLOSE_TOO_BIG) this.handlers.onTooBig(event.reason);
      const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.failures);
      this.failures += 1;
      this.timer = setTimeout(() => this.connect(), ceiling / 2 + (Math.random() * ceiling) / 2);
    });
  }

  // Back online or back in view: no need to wait out the backoff.
  reconnectNow() {
    if (this.timer !== null) this.connect();
  }

  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }
}
