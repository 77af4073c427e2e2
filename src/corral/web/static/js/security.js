// The security page's one-time token box: a Copy button and select-on-focus.
//
// Delegated from the document, because the box arrives in an htmx swap after the page loaded.
// The CSP forbids inline handlers, so the markup only carries data-copy / data-select-on-focus.
(() => {
  "use strict";

  async function copy(input) {
    input.focus();
    input.select();
    try {
      // Only in secure contexts, and it may be refused by permissions; then fall back.
      await navigator.clipboard.writeText(input.value);
      return true;
    } catch {
      try {
        return document.execCommand("copy");
      } catch {
        return false;
      }
    }
  }

  document.addEventListener("click", async (event) => {
    const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
    if (!button) return;
    const input = document.querySelector(button.dataset.copy);
    if (!(input instanceof HTMLInputElement)) return;
    const copied = await copy(input);
    if (copied) {
      button.textContent = "Copied";
      button.dataset.copied = "true";
    }
    if (window.Corral) {
      window.Corral.toast(
        copied ? "Token copied to the clipboard." : "Copying was blocked: select the token and copy it yourself.",
        copied ? "success" : "warning",
      );
    }
  });

  document.addEventListener("focusin", (event) => {
    const field = event.target;
    if (field instanceof HTMLInputElement && field.hasAttribute("data-select-on-focus")) field.select();
  });
})();
