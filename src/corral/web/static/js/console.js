// The browser console: noVNC's RFB client on the page's own origin (templates/consoles/console.html).
//
// Loaded as an ES module, so noVNC's modules load from /static/vendor/novnc with no bundler and
// no eval. The socket URL is built from window.location, so behind a TLS-terminating proxy the page
// at https:// talks wss:// to the same host. No password is given to RFB: the panel's proxy
// authenticates to the VNC server itself and offers this client the "None" security type.
//
// noVNC's "disconnect" event does not say why the socket closed, so the script opens the WebSocket
// itself, notes the close code and reason the panel sent, and hands the socket to noVNC. What to
// say for each code comes from the server (data-close-messages: consoles/errors.py's table); the
// reason the panel sent with the close ("the server has no VNC console") is shown beneath it.

import RFB from "../vendor/novnc/core/rfb.js";

const root = document.querySelector("[data-console]");

function socketUrl(path, ticket) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}?ticket=${encodeURIComponent(ticket)}`;
}

function closeMessages(element) {
  try {
    return JSON.parse(element.dataset.closeMessages || "{}");
  } catch {
    return {};
  }
}

function start(element) {
  const messages = closeMessages(element);
  const status = element.querySelector("[data-console-status]");
  const closed = element.querySelector("[data-console-closed]");
  const screen = element.querySelector("[data-console-screen]");
  const ctrlAltDel = element.querySelector("[data-console-cad]");
  const reconnect = element.querySelector("[data-console-reconnect]");
  const show = (text, state) => {
    status.textContent = text;
    status.dataset.state = state;
  };

  const ticket = element.dataset.ticket;
  // The ticket is spent by this one connection; drop it from the DOM so nothing else reuses it.
  delete element.dataset.ticket;
  const socket = new WebSocket(socketUrl(element.dataset.socketPath, ticket), ["binary"]);
  // Registered before noVNC sets its own handler, so it runs first: the code is known by the time
  // noVNC reports the disconnect.
  let closeEvent = null;
  socket.addEventListener("close", (event) => {
    closeEvent = event;
  });
  const rfb = new RFB(screen, socket);
  rfb.scaleViewport = true;
  rfb.focusOnClick = true;

  rfb.addEventListener("connect", () => {
    show("Connected", "connected");
    ctrlAltDel.disabled = false;
    element.dataset.connected = "true";
  });
  rfb.addEventListener("disconnect", () => {
    // No close event at all (noVNC gave up on its own) reads as a lost connection: code 1006.
    const code = closeEvent ? closeEvent.code : 1006;
    const normal = code === 1000;
    show(normal ? "Disconnected" : "Not connected", normal ? "ended" : "failed");
    closed.querySelector("[data-console-closed-message]").textContent = messages[String(code)] || messages.fallback || "";
    closed.querySelector("[data-console-closed-reason]").textContent = closeEvent ? closeEvent.reason : "";
    closed.dataset.closeCode = String(code);
    closed.classList.toggle("notice--error", !normal);
    closed.classList.toggle("notice--info", normal);
    closed.hidden = false;
    ctrlAltDel.disabled = true;
    reconnect.hidden = false;
    delete element.dataset.connected;
  });
  ctrlAltDel.addEventListener("click", () => rfb.sendCtrlAltDel());
}

if (root) start(root);
