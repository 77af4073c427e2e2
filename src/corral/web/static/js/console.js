// The browser console: noVNC's RFB client on the page's own origin (templates/consoles/console.html).
//
// Loaded as an ES module, so noVNC's modules load from /static/vendor/novnc with no bundler and
// no eval. The socket URL is built from window.location, so behind a TLS-terminating proxy the page
// at https:// talks wss:// to the same host. No password is given to RFB: the panel's proxy
// authenticates to the VNC server itself and offers this client the "None" security type.

import RFB from "../vendor/novnc/core/rfb.js";

const root = document.querySelector("[data-console]");

function socketUrl(path, ticket) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}?ticket=${encodeURIComponent(ticket)}`;
}

function start(element) {
  const status = element.querySelector("[data-console-status]");
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
  const rfb = new RFB(screen, socketUrl(element.dataset.socketPath, ticket), { wsProtocols: ["binary"] });
  rfb.scaleViewport = true;
  rfb.focusOnClick = true;

  rfb.addEventListener("connect", () => {
    show("Connected", "connected");
    ctrlAltDel.disabled = false;
    element.dataset.connected = "true";
  });
  rfb.addEventListener("disconnect", (event) => {
    show(event.detail.clean ? "Disconnected" : "Connection lost or refused", "failed");
    ctrlAltDel.disabled = true;
    reconnect.hidden = false;
    delete element.dataset.connected;
  });
  ctrlAltDel.addEventListener("click", () => rfb.sendCtrlAltDel());
}

if (root) start(root);
