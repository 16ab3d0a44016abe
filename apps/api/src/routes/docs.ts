import { Router } from 'express';
// The path helper only: the package's main module would load the whole browser bundle into the server.
import getAbsoluteFSPath from 'swagger-ui-dist/absolute-path';
import type { ApiContext } from '../context';
import { baseUrl } from '../http';
import { buildOpenApiDocument, openApiServer } from '../openapi';

const ASSETS = new Set(['swagger-ui.css', 'index.css', 'swagger-ui-bundle.js', 'swagger-ui-standalone-preset.js', 'favicon-32x32.png', 'favicon-16x16.png']);

const page = (base: string) => `<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>sessionbox API</title>
    <link rel="stylesheet" href="${base}/docs/assets/swagger-ui.css">
    <link rel="stylesheet" href="${base}/docs/assets/index.css">
    <link rel="icon" type="image/png" href="${base}/docs/assets/favicon-32x32.png" sizes="32x32">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="${base}/docs/assets/swagger-ui-bundle.js"></script>
    <script src="${base}/docs/assets/swagger-ui-standalone-preset.js"></script>
    <script src="${base}/docs/init.js"></script>
  </body>
</html>
`;

const init = (specUrl: string) => `window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: ${JSON.stringify(specUrl)},
    dom_id: '#swagger-ui',
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: 'StandaloneLayout',
  });
};
`;

/** `GET /openapi.json` (generated from the zod schemas) and `GET /docs` (Swagger UI served from node_modules, no CDN). */
export function docsRouter(ctx: ApiContext): Router {
  const r = Router();
  const assetsDir = getAbsoluteFSPath();
  // Generated once; only `servers` depends on the request.
  let doc: ReturnType<typeof buildOpenApiDocument> | null = null;

  r.get('/openapi.json', (req, res) => {
    const serverUrl = baseUrl(req, ctx.config.publicUrl);
    doc ??= buildOpenApiDocument({ serverUrl });
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.json({ ...doc, servers: [openApiServer(serverUrl, !!ctx.config.publicUrl)] });
  });

  r.get('/docs', (req, res) => {
    res.type('html').send(page(baseUrl(req, ctx.config.publicUrl)));
  });

  r.get('/docs/init.js', (req, res) => {
    res.type('application/javascript').send(init(`${baseUrl(req, ctx.config.publicUrl)}/openapi.json`));
  });

  r.get('/docs/assets/:file', (req, res, next) => {
    const file = String(req.params.file);
    if (!ASSETS.has(file)) return next();
    res.setHeader('Cache-Control', 'public, max-age=86400');
    res.sendFile(file, { root: assetsDir });
  });

  return r;
}
