// Corral's own browser code: toasts and the CSRF header for htmx.
//
// Loaded with `defer` after htmx and before Alpine. The CSP allows no eval and no inline script,
// so behaviour lives here and templates only carry data-* hooks. Alpine components go here too,
// registered with Alpine.data() in an alpine:init listener: the CSP build cannot evaluate
// expressions written in attributes, and this file runs before Alpine starts.
(() => {
  "use strict";

  const LEVELS = new Set(["success", "info", "warning", "error"]);
  // Long enough to read twice; errors linger because they usually ask the reader to act.
  const DISMISS_AFTER_MS = { success: 5000, info: 6000, warning: 8000, error: 12000 };
  const LEAVE_MS = 200;

  function region() {
    return document.getElementById("toasts");
  }

  function dismiss(toast) {
    if (!toast.isConnected || toast.classList.contains("toast--leaving")) return;
    toast.classList.add("toast--leaving");
    // animationend does not fire when motion is reduced to ~0 or the tab is hidden; the
    // timeout makes removal certain.
    const remove = () => toast.remove();
    toast.addEventListener("animationend", remove, { once: true });
    window.setTimeout(remove, LEAVE_MS + 50);
  }

  // Close button and an auto-dismiss timer that pauses while the pointer or focus is on the toast.
  function wire(toast) {
    if (toast.dataset.wired) return;
    toast.dataset.wired = "true";
    const level = LEVELS.has(toast.dataset.level) ? toast.dataset.level : "info";
    const delay = DISMISS_AFTER_MS[level];
    let timer = window.setTimeout(() => dismiss(toast), delay);
    const pause = () => window.clearTimeout(timer);
    const resume = () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => dismiss(toast), delay);
    };
    toast.addEventListener("mouseenter", pause);
    toast.addEventListener("mouseleave", resume);
    toast.addEventListener("focusin", pause);
    toast.addEventListener("focusout", resume);
    const close = toast.querySelector("[data-toast-close]");
    if (close) close.addEventListener("click", () => dismiss(toast));
  }

  function showToast(message, level) {
    const target = region();
    const template = document.getElementById("toast-template");
    if (!target || !template || typeof message !== "string" || message === "") return null;
    const safeLevel = LEVELS.has(level) ? level : "info";
    const toast = template.content.firstElementChild.cloneNode(true);
    toast.className = `toast toast--${safeLevel}`;
    toast.dataset.level = safeLevel;
    toast.setAttribute("role", safeLevel === "error" ? "alert" : "status");
    // textContent, never innerHTML: messages may quote user input.
    toast.querySelector("[data-toast-message]").textContent = message;
    target.append(toast);
    wire(toast);
    return toast;
  }

  // HX-Trigger {"corral:toast": [{message, level}, ...]} reaches us as detail.value (htmx wraps
  // non-object details); a script may also dispatch the event with {message, level} directly.
  function toastsFrom(detail) {
    if (!detail) return [];
    const value = Object.prototype.hasOwnProperty.call(detail, "value") ? detail.value : detail;
    const items = Array.isArray(value) ? value : [value];
    return items.filter((item) => item && typeof item.message === "string");
  }

  document.addEventListener("corral:toast", (event) => {
    for (const item of toastsFrom(event.detail)) showToast(item.message, item.level);
  });

  document.addEventListener("htmx:configRequest", (event) => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    const token = meta ? meta.getAttribute("content") : "";
    if (token) event.detail.headers["X-CSRF-Token"] = token;
  });

  // A `?done=<key>` toast (after a redirect) is shown once: take the key out of the address bar,
  // so a reload, a bookmark or a shared link does not announce the change again.
  function forgetDone() {
    const url = new URL(window.location.href);
    if (!url.searchParams.has("done")) return;
    url.searchParams.delete("done");
    window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
  }
  forgetDone();

  // Toasts rendered by the server (after a redirect, or without JavaScript), and any that an
  // htmx swap brings in.
  document.querySelectorAll("[data-toast]").forEach(wire);
  document.addEventListener("htmx:load", (event) => {
    const root = event.detail && event.detail.elt;
    if (!(root instanceof Element)) return;
    if (root.matches("[data-toast]")) wire(root);
    root.querySelectorAll("[data-toast]").forEach(wire);
  });

  window.Corral = Object.freeze({ toast: showToast });
})();
