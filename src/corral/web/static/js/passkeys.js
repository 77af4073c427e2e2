// Passkeys (WebAuthn) and the step-up prompt.
//
// - Sign in with a passkey: a [data-passkey-sign-in] button on the sign-in page.
// - Add a passkey: the [data-passkey-register] form on /account/security/passkeys, or on a staff
//   account's enrolment link page (data-passkey-endpoint and a [data-passkey-token] field).
// - Step-up: when an htmx action is refused with the X-Corral-Step-Up header, the server's prompt
//   is swapped into the page's <dialog id="step-up-dialog">; once the prompt is completed (the
//   corral:stepped-up event) the refused request is sent again. Our own fetch calls do the same
//   through postWithStepUp().
//
// The server speaks py_webauthn's JSON (base64url strings); the browser API wants ArrayBuffers,
// so options and credentials are converted here. No inline script: the CSP forbids it.
(() => {
  "use strict";

  const STEP_UP_HEADER = "X-Corral-Step-Up";

  function fromB64url(value) {
    const base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map((item) => ({ ...item, id: fromB64url(item.id) }));
  }

  function creationOptions(json) {
    return {
      ...json,
      challenge: fromB64url(json.challenge),
      user: { ...json.user, id: fromB64url(json.user.id) },
      excludeCredentials: descriptors(json.excludeCredentials),
    };
  }

  function requestOptions(json) {
    return { ...json, challenge: fromB64url(json.challenge), allowCredentials: descriptors(json.allowCredentials) };
  }

  function credentialJSON(credential) {
    const response = credential.response;
    const out = {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: { clientDataJSON: toB64url(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      out.response.attestationObject = toB64url(response.attestationObject);
      out.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      out.response.authenticatorData = toB64url(response.authenticatorData);
      out.response.signature = toB64url(response.signature);
      if (response.userHandle) out.response.userHandle = toB64url(response.userHandle);
    }
    return out;
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  async function postJSON(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body || {}),
    });
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    return { response, data };
  }

  function ceremonyMessage(error) {
    if (error && error.name === "NotAllowedError") return "The passkey prompt was closed or timed out. Try again.";
    if (error && error.name === "InvalidStateError") return "This passkey is already registered to your account.";
    if (error && error.name === "SecurityError") return "Passkeys do not work on this address (it must be the panel's own HTTPS address).";
    return "Your browser could not use a passkey here.";
  }

  function showError(box, message) {
    const target = box ? box.querySelector("[data-step-up-error], [data-passkey-error]") : null;
    const fallback = document.querySelector("[data-passkey-error]");
    const element = target || fallback;
    if (element) {
      element.textContent = message;
      element.hidden = false;
    } else if (window.Corral) {
      window.Corral.toast(message, "error");
    }
  }

  // --- the step-up dialog ------------------------------------------------------------------------

  let replay = null; // the htmx request a step-up interrupted
  let waiter = null; // a postWithStepUp() call waiting for the prompt

  function dialog() {
    return document.getElementById("step-up-dialog");
  }

  function openDialog() {
    const element = dialog();
    if (element && !element.open) element.showModal();
  }

  function closeDialog() {
    const element = dialog();
    if (element && element.open) element.close();
    const body = document.getElementById("step-up-body");
    if (body) body.replaceChildren();
  }

  function cancelStepUp() {
    replay = null;
    if (waiter) waiter.reject(new Error("step-up cancelled"));
    waiter = null;
    closeDialog();
  }

  function steppedUp() {
    closeDialog();
    if (waiter) waiter.resolve();
    waiter = null;
    const pending = replay;
    replay = null;
    if (pending && window.htmx) window.htmx.ajax(pending.verb, pending.path, { source: pending.elt });
  }

  function stepUp(staff) {
    return new Promise((resolve, reject) => {
      waiter = { resolve, reject };
      window.htmx
        .ajax("GET", `/step-up/prompt?staff=${staff ? "true" : "false"}`, { target: "#step-up-body", swap: "innerHTML" })
        .then(openDialog, reject);
    });
  }

  async function postWithStepUp(url, body) {
    let result = await postJSON(url, body);
    if (result.response.status === 403 && result.response.headers.get(STEP_UP_HEADER)) {
      const details = (result.data && result.data.details) || {};
      await stepUp(Boolean(details.staff_action));
      result = await postJSON(url, body);
    }
    return result;
  }

  document.addEventListener("htmx:beforeSwap", (event) => {
    const xhr = event.detail.xhr;
    const kind = xhr ? xhr.getResponseHeader(STEP_UP_HEADER) : null;
    if (!kind) return;
    // The prompt (or the prompt again, with an error) goes into the dialog even though it is a 4xx.
    event.detail.shouldSwap = true;
    event.detail.isError = false;
    const config = event.detail.requestConfig;
    const element = dialog();
    const fromDialog = config && config.elt && element && element.contains(config.elt);
    if (kind === "required" && config && !fromDialog) replay = { verb: config.verb, path: config.path, elt: config.elt };
  });

  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail && event.detail.target && event.detail.target.id === "step-up-body") openDialog();
  });

  document.addEventListener("corral:stepped-up", steppedUp);

  document.addEventListener("close", (event) => {
    if (event.target === dialog() && (replay || waiter)) cancelStepUp();
  }, true);

  async function passkeyStepUp(button) {
    const box = button.closest("[data-step-up]");
    button.disabled = true;
    try {
      const options = await postJSON("/step-up/passkey/options", {});
      if (!options.response.ok) throw new Error((options.data && options.data.message) || "Could not start.");
      const credential = await navigator.credentials.get({ publicKey: requestOptions(options.data) });
      const result = await postJSON("/step-up/passkey", { credential: credentialJSON(credential) });
      if (!result.response.ok) {
        showError(box, (result.data && result.data.message) || "That passkey could not be verified.");
        return;
      }
      const element = dialog();
      if (element && box && element.contains(box)) steppedUp();
      else window.location.assign((box && box.dataset.next) || "/dashboard");
    } catch (error) {
      showError(box, error instanceof DOMException ? ceremonyMessage(error) : String(error.message || error));
    } finally {
      button.disabled = false;
    }
  }

  // --- sign in and registration ------------------------------------------------------------------

  async function signIn(button) {
    const box = button.closest("[data-passkey-box]") || document;
    const next = button.dataset.next || "/dashboard";
    button.disabled = true;
    try {
      const options = await postJSON("/login/passkey/options", {});
      if (!options.response.ok) throw new Error((options.data && options.data.message) || "Could not start.");
      const credential = await navigator.credentials.get({ publicKey: requestOptions(options.data) });
      const result = await postJSON("/login/passkey", { credential: credentialJSON(credential), next });
      if (!result.response.ok) {
        showError(box, (result.data && result.data.message) || "That passkey could not be verified.");
        return;
      }
      window.location.assign(result.data.redirect || next);
    } catch (error) {
      showError(box, error instanceof DOMException ? ceremonyMessage(error) : String(error.message || error));
    } finally {
      button.disabled = false;
    }
  }

  // The passkeys page's form posts to /account/security/passkeys (behind a step-up); the enrolment
  // link's page names its own endpoint and carries the link's token instead (no step-up there).
  async function register(form) {
    const nameField = form.querySelector("[data-passkey-name]");
    const name = nameField ? nameField.value.trim() : "";
    const tokenField = form.querySelector("[data-passkey-token]");
    const extra = tokenField ? { token: tokenField.value } : {};
    const endpoint = form.dataset.passkeyEndpoint || "/account/security/passkeys";
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      const options = await postWithStepUp(`${endpoint}/options`, extra);
      if (!options.response.ok) throw new Error((options.data && options.data.message) || "Could not start.");
      const credential = await navigator.credentials.create({ publicKey: creationOptions(options.data) });
      const result = await postWithStepUp(endpoint, { ...extra, credential: credentialJSON(credential), name });
      if (!result.response.ok) {
        showError(null, (result.data && result.data.message) || "That passkey could not be added.");
        return;
      }
      window.location.assign(result.data.redirect);
    } catch (error) {
      showError(null, error instanceof DOMException ? ceremonyMessage(error) : String(error.message || error));
    } finally {
      if (button) button.disabled = false;
    }
  }

  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const stepUpButton = target.closest("[data-step-up-passkey]");
    if (stepUpButton) {
      passkeyStepUp(stepUpButton);
      return;
    }
    const signInButton = target.closest("[data-passkey-sign-in]");
    if (signInButton) {
      signIn(signInButton);
      return;
    }
    if (target.closest("[data-step-up-cancel]")) cancelStepUp();
  });

  document.addEventListener("submit", (event) => {
    const form = event.target instanceof HTMLFormElement ? event.target : null;
    if (form && form.hasAttribute("data-passkey-register")) {
      event.preventDefault();
      register(form);
    }
  });

  window.CorralPasskeys = Object.freeze({ postWithStepUp, stepUp });
})();
