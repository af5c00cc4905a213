// Starts Swagger UI on the OpenAPI document (kept out of the page so a strict CSP can forbid inline scripts).
window.addEventListener("load", function () {
  var spec = document.getElementById("docs-init").dataset.spec;
  window.ui = SwaggerUIBundle({ url: spec, dom_id: "#swagger-ui", deepLinking: true });
});
