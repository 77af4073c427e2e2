// The server pages: a plain form marked data-submit-once disables its submit buttons once sent, so
// a double click sends one order or setup. (The server refuses duplicates anyway; this just keeps
// the second click from looking like it did something.) htmx forms use hx-disabled-elt instead.
(() => {
  "use strict";

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-submit-once")) return;
    if (form.dataset.sent === "true") {
      event.preventDefault();
      return;
    }
    form.dataset.sent = "true";
    // After the submit has started: a button disabled before it would not be sent with the form.
    window.setTimeout(() => {
      form.querySelectorAll("button[type=submit]").forEach((button) => {
        button.disabled = true;
      });
    }, 0);
  });

  // Back/forward cache: a page shown again must be usable again.
  window.addEventListener("pageshow", () => {
    document.querySelectorAll("form[data-submit-once]").forEach((form) => {
      delete form.dataset.sent;
      form.querySelectorAll("button[type=submit]").forEach((button) => {
        button.disabled = false;
      });
    });
  });
})();
