// Copies the browser builds of our npm dependencies into the package's static folder.
//
// Run by `npm run build` after `npm ci`. The panel never loads anything from a CDN: every script
// the CSP allows is served from /static/vendor, which this script rebuilds from scratch so a
// removed dependency cannot linger there.
//
// To add a library, add its (source in node_modules, destination under vendor/) pairs to COPIES.

import { cp, mkdir, rm, stat } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const MODULES = join(ROOT, "node_modules");
const VENDOR = join(ROOT, "src", "corral", "web", "static", "vendor");

/** @type {Array<[string, string]>} */
const COPIES = [
  ["htmx.org/dist/htmx.min.js", "htmx/htmx.min.js"],
  ["htmx.org/LICENSE", "htmx/LICENSE"],
  // The CSP build: the regular Alpine build evaluates attribute expressions with `new Function`,
  // which our script-src 'self' forbids.
  ["@alpinejs/csp/dist/cdn.min.js", "alpine-csp/alpine-csp.min.js"],
  // noVNC's ES modules, loaded as they are by static/js/console.js (a directory is copied whole;
  // core/ imports ../vendor/pako, so the two keep their relative places).
  ["@novnc/novnc/core", "novnc/core"],
  ["@novnc/novnc/vendor/pako", "novnc/vendor/pako"],
  ["@novnc/novnc/LICENSE.txt", "novnc/LICENSE.txt"],
  // Swagger UI for /api/docs, started by static/js/api-docs.js (no inline script under our CSP).
  ["swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui/swagger-ui-bundle.js"],
  ["swagger-ui-dist/swagger-ui.css", "swagger-ui/swagger-ui.css"],
  ["swagger-ui-dist/LICENSE", "swagger-ui/LICENSE"],
  ["swagger-ui-dist/NOTICE", "swagger-ui/NOTICE"],
];

async function exists(path) {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function main() {
  const missing = [];
  for (const [source] of COPIES) {
    if (!(await exists(join(MODULES, source)))) missing.push(source);
  }
  if (missing.length > 0) {
    // Fail before touching vendor/ so a half-installed node_modules cannot wipe a working build.
    console.error(`missing in node_modules (run \`npm ci\` first): ${missing.join(", ")}`);
    process.exit(1);
  }

  await rm(VENDOR, { recursive: true, force: true });
  for (const [source, destination] of COPIES) {
    const target = join(VENDOR, destination);
    await mkdir(dirname(target), { recursive: true });
    await cp(join(MODULES, source), target, { recursive: true });
    console.log(`${source} -> ${relative(ROOT, target)}`);
  }
}

await main();
