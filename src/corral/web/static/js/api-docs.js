// Starts Swagger UI on /api/docs (templates/pages/api_docs.html). Kept out of the page because
// the CSP allows no inline script.
(() => {
  "use strict";

  const root = document.getElementById("swagger-ui");
  if (!root || typeof window.SwaggerUIBundle !== "function") return;

  window.SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    // Never send the document to swagger.io's online validator (nor load its badge): the page
    // talks to this panel only.
    validatorUrl: null,
    // "Try it out" sends the token entered under "Authorize"; it is kept only while the page is open.
    persistAuthorization: false,
  });
})();
