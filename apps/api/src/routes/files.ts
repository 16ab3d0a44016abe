import type { OpenAPIRegistry, ResponseConfig } from '@asteasolutions/zod-to-openapi';
import express, { Router, type NextFunction, type Request, type Response } from 'express';
import multer from 'multer';
import { pipeline } from 'node:stream';
import {
  ErrorBody,
  FilePath,
  FileTooLargeError,
  SessionIdParams,
  UnsupportedMediaTypeError,
  ValidationError,
  filePathFromUrl,
  mimeTypeOf,
  type SessionFile,
} from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { baseUrl, caller } from '../http';
import { fileUrl } from '../presenters';
import { sessionIdParam } from './sessions';

const MAX_PARTS = 20;
const FILE_ROUTE = /^\/v1\/sessions\/([^/]+)\/files\/(.+)$/;
/** The same route without capture groups: Express would decode those itself and answer a stray `%` with its own 400. */
const FILE_ROUTE_MATCH = /^\/v1\/sessions\/(?:[^/]+)\/files\/.+$/;

export const SessionFileEntry = z
  .object({
    path: FilePath,
    size: z.number().int().meta({ description: 'Bytes.' }),
    modifiedAt: z.iso.datetime(),
    mimeType: z.string().meta({ example: 'text/csv; charset=utf-8' }),
    url: z.string().meta({ description: 'Download URL (GET).' }),
  })
  .meta({ id: 'SessionFile' });

export const SessionFileList = z
  .object({
    files: z.array(SessionFileEntry),
    truncated: z.boolean().meta({ description: 'More than 10000 files: the list stops there.' }),
  })
  .meta({ id: 'SessionFileList' });

export const UploadedFiles = z.object({ files: z.array(SessionFileEntry) }).meta({ id: 'UploadedFiles' });

/** Session id and file path of a `/v1/sessions/<id>/files/<path>` request, decoded and checked (400 `invalid_path`). */
function target(req: Request): { sessionId: string; path: string } {
  const m = FILE_ROUTE.exec(req.path);
  const sessionId = sessionIdParam(m ? m[1] : '');
  return { sessionId, path: filePathFromUrl(m ? m[2] : '') };
}

/** Raw uploads must reach the files router untouched: the app's JSON parser leaves them alone. */
export function isFileUpload(req: Request): boolean {
  return req.method === 'PUT' && FILE_ROUTE.test(req.path);
}

function entry(base: string, sessionId: string, f: SessionFile) {
  return {
    path: f.path,
    size: f.size,
    modifiedAt: new Date(f.mtimeMs).toISOString(),
    mimeType: mimeTypeOf(f.path),
    url: fileUrl(base, sessionId, f.path),
  };
}

/** `attachment` with an ASCII fallback and the exact UTF-8 name (RFC 6266 / 5987). */
function contentDisposition(path: string): string {
  const name = path.split('/').pop() ?? 'file';
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  // A byte that is not UTF-8 arrives as a lone surrogate (see encodeFilePath): U+FFFD in the UTF-8 name.
  const wellFormed = name.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(wellFormed)}`;
}

export function filesRouter(ctx: ApiContext): Router {
  const r = Router();
  const { files } = ctx;
  const base = (req: Request) => baseUrl(req, ctx.config.publicUrl);

  const raw = express.raw({ type: () => true, limit: ctx.config.maxFileBytes });
  const rawBody = (req: Request, res: Response, next: NextFunction) =>
    raw(req, res, (err?: unknown) => {
      if ((err as { type?: string })?.type === 'entity.too.large') {
        return next(new FileTooLargeError('file_too_large', `the file is over the ${ctx.config.maxFileBytes} byte cap per file`));
      }
      next(err);
    });

  const upload = multer({
    storage: multer.memoryStorage(),
    preservePath: true,
    defParamCharset: 'utf8',
    limits: { fileSize: ctx.config.maxFileBytes, files: MAX_PARTS, fields: MAX_PARTS, parts: MAX_PARTS * 2 },
  }).array('files', MAX_PARTS);
  const multipart = (req: Request, res: Response, next: NextFunction) => {
    if (!req.is('multipart/form-data')) {
      return next(new UnsupportedMediaTypeError(`expected Content-Type: multipart/form-data, got ${req.headers['content-type'] ?? 'none'}`));
    }
    upload(req, res, (err?: unknown) => {
      if (err instanceof multer.MulterError) {
        if (err.code === 'LIMIT_FILE_SIZE') return next(new FileTooLargeError('file_too_large', `a file is over the ${ctx.config.maxFileBytes} byte cap per file`));
        if (err.code === 'LIMIT_FILE_COUNT' || err.code === 'LIMIT_PART_COUNT' || err.code === 'LIMIT_FIELD_COUNT') {
          return next(new FileTooLargeError('file_too_large', `at most ${MAX_PARTS} files per request`));
        }
        return next(new ValidationError(`multipart: ${err.message}${err.field ? ` (field ${err.field})` : ''}; send the files in a field named "files"`, { field: 'files' }));
      }
      next(err);
    });
  };

  /**
   * Refuses an upload whose declared size is over what the session can hold before a byte of it is
   * read (a chunked one is held to the per-file and per-request caps of its parser).
   */
  const withinSessionCap = async (req: Request, _res: Response, next: NextFunction) => {
    const sessionId = typeof req.params.id === 'string' ? sessionIdParam(req.params.id) : target(req).sessionId;
    const rec = await ctx.core.sessions.getLive(sessionId, caller(req), false, false);
    // Multipart framing adds a little per part on top of the files themselves.
    const cap = files.sessionCap(rec) + 64 * 1024;
    if (Number(req.headers['content-length'] ?? 0) > cap) {
      return next(new FileTooLargeError('session_files_too_large', `the upload is larger than the session can hold (${cap} bytes)`));
    }
    next();
  };

  r.get('/v1/sessions/:id/files', async (req, res) => {
    const sessionId = sessionIdParam(String(req.params.id));
    const list = await files.list(sessionId, caller(req));
    res.json({ files: list.files.map((f) => entry(base(req), sessionId, f)), truncated: list.truncated });
  });

  r.post('/v1/sessions/:id/files', withinSessionCap, multipart, async (req, res) => {
    const sessionId = sessionIdParam(String(req.params.id));
    const parts = (req.files ?? []) as Express.Multer.File[];
    const named = ([] as unknown[]).concat((req.body as Record<string, unknown> | undefined)?.path ?? []);
    if (named.length && named.length !== parts.length) {
      throw new ValidationError(`path: give one "path" field per file (${parts.length} files, ${named.length} paths), or none to use the file names`, { field: 'path' });
    }
    const uploads = parts.map((p, i) => ({ path: named.length ? String(named[i]) : p.originalname, data: p.buffer }));
    const written = await files.write(sessionId, uploads, caller(req));
    res.status(201).json({ files: written.map((f) => entry(base(req), sessionId, f)) });
  });

  r.put(FILE_ROUTE_MATCH, withinSessionCap, rawBody, async (req, res) => {
    const { sessionId, path } = target(req);
    const data = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const [written] = await files.write(sessionId, [{ path, data }], caller(req));
    res.status(201).json(entry(base(req), sessionId, written));
  });

  r.get(FILE_ROUTE_MATCH, async (req, res) => {
    const { sessionId, path } = target(req);
    const dl = await files.read(sessionId, path, caller(req));
    res.status(200);
    res.setHeader('Content-Type', dl.mimeType);
    res.setHeader('Content-Disposition', contentDisposition(dl.path));
    // The bytes were written by sandboxed code: never let a browser run them on this origin.
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Content-Security-Policy', "sandbox; default-src 'none'");
    res.setHeader('Cache-Control', 'private, no-store');
    // pipeline: backpressure both ways, and a client that hangs up ends the read in the container.
    pipeline(dl.stream, res, (err) => {
      if (err && err.code !== 'ERR_STREAM_PREMATURE_CLOSE') ctx.logger.warn({ sessionId, path: dl.path, err: err.message }, 'file download cut short');
    });
  });

  r.delete(FILE_ROUTE_MATCH, async (req, res) => {
    const { sessionId, path } = target(req);
    await files.delete(sessionId, path, caller(req));
    res.status(204).end();
  });

  return r;
}

const errors = (entries: Record<number, string>): Record<string, ResponseConfig> =>
  Object.fromEntries(Object.entries(entries).map(([s, d]) => [s, { description: d, content: { 'application/json': { schema: ErrorBody } } }]));

const SessionPath = z.object({ id: SessionIdParams.shape.id.meta({ description: 'Session id.' }) });
const FileRoute = z.object({
  id: SessionIdParams.shape.id.meta({ description: 'Session id.' }),
  path: z.string().meta({
    description: 'File path relative to the working directory; may contain `/` (percent-encode other reserved characters).',
    example: 'out/clean.csv',
  }),
});
const GONE = 'The session expired or was deleted (`session_expired`, `session_terminated`); `restorable` and `restoreUntil` say whether `restoreFrom` can bring its files back.';
const BAD_PATH = 'Bad path (`invalid_path`): absolute, `..`, `.`, empty segment, backslash, control character or NUL, too long, or through a symlink.';

export function registerFilesPaths(registry: OpenAPIRegistry) {
  registry.registerPath({
    method: 'get',
    path: '/v1/sessions/{id}/files',
    operationId: 'listSessionFiles',
    tags: ['files'],
    summary: 'List the files of a session',
    description: 'Regular files under the working directory (/work), recursively; symlinks and other special files are not listed.',
    request: { params: SessionPath },
    responses: {
      200: { description: 'The files.', content: { 'application/json': { schema: SessionFileList } } },
      ...errors({ 404: 'No such session.', 410: GONE, 503: 'The session container does not answer (`session_unreachable`).' }),
    },
  });

  registry.registerPath({
    method: 'post',
    path: '/v1/sessions/{id}/files',
    operationId: 'uploadSessionFiles',
    tags: ['files'],
    summary: 'Upload several files (multipart)',
    description:
      `multipart/form-data with up to ${MAX_PARTS} parts named \`files\`. Each lands at its filename (directories allowed, e.g. ` +
      '`filename="data/sales.csv"`), or at the matching `path` field when one `path` is given per file. ' +
      'Every path and cap is checked before anything is written; existing files are replaced.',
    request: {
      params: SessionPath,
      body: {
        required: true,
        content: {
          'multipart/form-data': {
            schema: z.object({
              files: z.array(z.string().meta({ format: 'binary' })),
              path: z.array(FilePath).optional(),
            }),
          },
        },
      },
    },
    responses: {
      201: { description: 'Written.', content: { 'application/json': { schema: UploadedFiles } } },
      ...errors({
        400: BAD_PATH,
        404: 'No such session.',
        410: GONE,
        413: 'A file is over SESSIONBOX_MAX_FILE_BYTES (`file_too_large`) or the session would hold more than its cap (`session_files_too_large`).',
        415: 'Not multipart/form-data.',
      }),
    },
  });

  registry.registerPath({
    method: 'put',
    path: '/v1/sessions/{id}/files/{path}',
    operationId: 'putSessionFile',
    tags: ['files'],
    summary: 'Upload one file (raw body)',
    description: 'The request body, byte for byte, becomes the file (any Content-Type). Parent directories are created; an existing file is replaced.',
    request: { params: FileRoute, body: { required: true, content: { 'application/octet-stream': { schema: z.string().meta({ format: 'binary' }) } } } },
    responses: {
      201: { description: 'Written.', content: { 'application/json': { schema: SessionFileEntry } } },
      ...errors({ 400: BAD_PATH, 404: 'No such session.', 410: GONE, 413: 'Over the per-file or per-session cap.' }),
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/v1/sessions/{id}/files/{path}',
    operationId: 'getSessionFile',
    tags: ['files'],
    summary: 'Download a file',
    description: 'The file with a Content-Type from its extension, as an attachment. URLs also come in `Execution.files[].url`.',
    request: { params: FileRoute },
    responses: {
      200: { description: 'The bytes.', content: { 'application/octet-stream': { schema: z.string().meta({ format: 'binary' }) } } },
      ...errors({ 400: BAD_PATH, 404: 'No such session or file (`file_not_found`).', 410: GONE, 413: 'The file is over the per-file cap.' }),
    },
  });

  registry.registerPath({
    method: 'delete',
    path: '/v1/sessions/{id}/files/{path}',
    operationId: 'deleteSessionFile',
    tags: ['files'],
    summary: 'Delete a file (or a directory, recursively)',
    request: { params: FileRoute },
    responses: { 204: { description: 'Deleted.' }, ...errors({ 400: BAD_PATH, 404: 'No such session or file.', 410: GONE }) },
  });
}
