import { connect } from 'node:net';
import { cpus } from 'node:os';
import fc from 'fast-check';
import { Http, namespaceContainers, sleep, startSystem, type TestSystem } from './helpers/system';

/**
 * Property-based: whatever the body, header or path, the API answers below 500 with
 * `{ error: { code } }` (or a documented success), and leaves no container it should not.
 */

const KEY = 'fuzz-key-0123456789abcdef01';
const ADMIN = 'fuzz-admin-0123456789abcdef';
const RUNS = Number(process.env.FUZZ_RUNS ?? 100);
const HOST_CPUS = cpus().length;

let sys: TestSystem;
let http: Http;
let admin: Http;
let fixed: string; // one long-lived session that bodies may target
const made = { sessions: 0, executions: 0, toolSessions: 0, dropinRuns: 0, answerLost: 0 };
/** Status codes seen, per property (printed at the end: evidence the generators reach past the validators). */
const seen: Record<string, Record<number, number>> = {};
const tally = (prop: string, status: number) => {
  seen[prop] ??= {};
  seen[prop][status] = (seen[prop][status] ?? 0) + 1;
};

beforeAll(async () => {
  sys = await startSystem({ SESSIONBOX_API_KEYS: `fuzz:${KEY}`, SESSIONBOX_ADMIN_KEY: ADMIN, SESSIONBOX_KEY_EXECUTIONS_PER_MINUTE: '0' });
  http = new Http(sys.url, { authorization: `Bearer ${KEY}` });
  admin = new Http(sys.url, { authorization: `Bearer ${ADMIN}` });
  fixed = (await http.createSession({ metadata: { role: 'fixed' } })).id;
});

afterAll(async () => {
  if (!sys) return;
  try {
    // every session the generators made was deleted as it was made: only the fixed one is left
    const live = ((await admin.get('/v1/sessions?status=ready')).body.sessions as { id: string }[]).map((s) => s.id);
    const busy = ((await admin.get('/v1/sessions?status=busy')).body.sessions as { id: string }[]).map((s) => s.id);
    expect([...live, ...busy]).toEqual([fixed]);
    expect(await namespaceContainers(sys.config.namespace)).toHaveLength(1);
    expect((await http.delete(`/v1/sessions/${fixed}`)).status).toBe(204);
    expect(await namespaceContainers(sys.config.namespace)).toHaveLength(0);
    console.log(`fuzz: ${JSON.stringify(made)} made by valid bodies, all removed; statuses: ${JSON.stringify(seen)}`);
  } finally {
    await sys.stop();
  }
});

/** The one rule: below 500, and an error carries a code (MCP speaks JSON-RPC: its codes are numbers). */
function handled(r: { status: number; body: any }, what: unknown) {
  const coded = typeof r.body?.error?.code === 'string' || (r.body?.jsonrpc === '2.0' && typeof r.body?.error?.code === 'number');
  if (r.status >= 500 || (r.status >= 400 && !coded)) {
    throw new Error(`unhandled: ${r.status} ${JSON.stringify(r.body)?.slice(0, 300)} for ${JSON.stringify(what)?.slice(0, 300)}`);
  }
}

// ---- generators -----------------------------------------------------------------------------

const json = fc.jsonValue({ maxDepth: 3 });
const wrong = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
);
/** Mostly wrong, sometimes right: a field that is valid a quarter of the time. */
const field = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ arbitrary: valid, weight: 1 }, { arbitrary: wrong, weight: 3 });

const limits = fc.record(
  {
    memoryMb: field(fc.integer({ min: 64, max: 2048 })),
    cpus: field(fc.double({ min: 0.05, max: Math.max(0.05, Math.min(1, HOST_CPUS)), noNaN: true })),
    pids: field(fc.integer({ min: 16, max: 4096 })),
    diskMb: field(fc.integer({ min: 16, max: 1024 })),
    [`x${'y'}`]: wrong, // an unknown key: only ever invalid
  },
  { requiredKeys: [] },
);
const sessionBody = fc.oneof(
  json,
  fc.record(
    {
      ttlSeconds: field(fc.integer({ min: 10, max: 86400 })),
      limits: field(limits),
      metadata: field(fc.dictionary(fc.string({ minLength: 1, maxLength: 64 }), fc.string({ maxLength: 64 }), { maxKeys: 20 })),
      restoreFrom: field(fc.uuid()),
    },
    { requiredKeys: [] },
  ),
);
/** Safe code when it is code at all: a random string is at worst a SyntaxError. */
const code = fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('print(1)', '1 + 1', '', 'raise ValueError("x")'));
const executeBody = fc.oneof(
  json,
  fc.record({ code }),
  fc.record({ code: field(code), timeoutMs: field(fc.integer({ min: 100, max: 5000 })), extra: wrong }, { requiredKeys: [] }),
);
const toolBody = fc.oneof(
  json,
  fc.record({ code: field(code), session_id: field(fc.constantFrom<string | null>(null)) }, { requiredKeys: [] }),
  fc.record({ tool_call: wrong, type: fc.constantFrom('tool_use', 'function', 'x'), input: field(fc.record({ code: field(code) })) }, { requiredKeys: [] }),
);
const dropinBody = fc.oneof(json, fc.record({ code: wrong, other: wrong }, { requiredKeys: [] }));

const post = async (path: string, body: unknown) => {
  const r = await http.post(path, JSON.stringify(body) ?? '', { 'content-type': 'application/json' });
  tally(path.replace(fixed, '{id}'), r.status);
  handled(r, { path, body });
  return r;
};

// ---- properties --------------------------------------------------------------------------------

test('POST /v1/sessions: any JSON body → 201 (then deleted) or a 4xx with a code', async () => {
  await fc.assert(
    fc.asyncProperty(sessionBody, async (body) => {
      const r = await post('/v1/sessions', body);
      if (r.status === 201) {
        made.sessions++;
        expect((await http.delete(`/v1/sessions/${r.body.id}`)).status).toBe(204);
      } else expect(r.status).toBeGreaterThanOrEqual(400);
    }),
    { numRuns: RUNS },
  );
});

test('POST /v1/sessions/{id}/executions: any JSON body → 202 or a 4xx with a code', async () => {
  await fc.assert(
    fc.asyncProperty(executeBody, async (body) => {
      const r = await post(`/v1/sessions/${fixed}/executions`, body);
      if (r.status === 202) made.executions++;
      else expect(r.status).toBeGreaterThanOrEqual(400);
    }),
    { numRuns: RUNS * 2 },
  );
});

test('POST /v1/tools/execute_python: any JSON body → a tool answer or a 4xx with a code', async () => {
  await fc.assert(
    fc.asyncProperty(toolBody, async (body) => {
      const r = await post('/v1/tools/execute_python', body);
      if (r.status === 200) {
        expect(typeof r.body.ok).toBe('boolean');
        // the code ran (ok or not, the execution says how) or it could not run and a coded error says why
        if (r.body.execution === null) expect({ ok: r.body.ok, code: typeof r.body.error?.code }).toEqual({ ok: false, code: 'string' });
        else expect({ error: r.body.error, status: typeof r.body.execution.status }).toEqual({ error: undefined, status: 'string' });
        if (r.body.session_created) {
          made.toolSessions++;
          expect((await http.delete(`/v1/sessions/${r.body.session_id}`)).status).toBe(204);
        }
      }
    }),
    { numRuns: RUNS },
  );
});

test('POST /execute and /v1/run/: any JSON body → an answer or a 4xx with a code, no session left', async () => {
  await fc.assert(
    fc.asyncProperty(fc.constantFrom('/execute', '/v1/run/'), dropinBody, async (path, body) => {
      const r = await post(path, body);
      if (r.status === 200) made.dropinRuns++;
    }),
    { numRuns: RUNS },
  );
});

test('path parameters: any id or file path → a 4xx with a code', async () => {
  const segment = fc.oneof(fc.string({ maxLength: 40 }), fc.uuid(), fc.constantFrom('..', '.', '%00', '%2e%2e', 'a/../../b', '\u0000'));
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom('GET', 'DELETE', 'POST', 'PUT'),
      segment,
      segment,
      fc.constantFrom(
        (a: string) => `/v1/sessions/${a}`,
        (a: string, b: string) => `/v1/sessions/${a}/executions/${b}`,
        (a: string, b: string) => `/v1/sessions/${a}/executions/${b}/events`,
        (a: string, b: string) => `/v1/sessions/${a}/figures/${b}`,
        (a: string) => `/v1/sessions/${a}/files`,
        (_a: string, b: string) => `/v1/sessions/${fixed}/files/${b}`,
        (_a: string, b: string) => `/v1/sessions/${fixed}/executions/${b}`,
        (_a: string, b: string) => `/v1/sessions/${fixed}/figures/${b}`,
      ),
      async (method, a, b, route) => {
        // on a raw socket: no client normalizes `..` or `.` away before the server sees them
        const path = route(encodeURIComponent(a), encodeURIComponent(b));
        const withBody = method === 'PUT' || method === 'POST';
        const head = [`${method} ${path} HTTP/1.1`, 'Host: fuzz', 'Connection: close', `Authorization: Bearer ${KEY}`];
        if (withBody) head.push('Content-Type: application/octet-stream', 'Content-Length: 1');
        const r = await raw(`${head.join('\r\n')}\r\n\r\n${withBody ? 'x' : ''}`, 30_000);
        expect(r).not.toBeNull();
        tally('path params', r!.status);
        handled(r!, { method, path });
        // a write into the fixed session may succeed (a valid file name): clean it up
        if (r!.status < 400 && method === 'PUT') await raw(`DELETE ${path} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\nAuthorization: Bearer ${KEY}\r\n\r\n`);
      },
    ),
    { numRuns: RUNS * 2 },
  );
  // the fixed session survived all of it
  expect((await http.get(`/v1/sessions/${fixed}`)).status).toBe(200);
});

/** A request written by hand on a socket: any method, header value or framing. */
function raw(request: string | Buffer, timeoutMs = 5000): Promise<{ status: number; body: any; text: string } | null> {
  const u = new URL(sys.url);
  return new Promise((resolve) => {
    const sock = connect(Number(u.port), u.hostname);
    const chunks: Buffer[] = [];
    const finish = () => {
      clearTimeout(timer);
      sock.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (!m) return resolve(null); // no answer: the server waited for a body that never came
      const bodyText = text.slice(text.indexOf('\r\n\r\n') + 4);
      let body: any = null;
      try {
        body = JSON.parse(/transfer-encoding: chunked/i.test(text) ? dechunk(bodyText) : bodyText);
      } catch {
        // not JSON
      }
      resolve({ status: Number(m[1]), body, text });
    };
    const timer = setTimeout(finish, timeoutMs);
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', finish);
    sock.on('close', finish);
    sock.write(request);
  });
}

function dechunk(s: string): string {
  let out = '';
  let rest = s;
  for (;;) {
    const nl = rest.indexOf('\r\n');
    const n = parseInt(rest.slice(0, nl), 16);
    if (!n) return out;
    out += rest.slice(nl + 2, nl + 2 + n);
    rest = rest.slice(nl + 2 + n + 2);
  }
}

test('headers and framing: any content-type, accept, authorization, encoding or length → a 4xx with a code', async () => {
  const headerValue = fc.oneof(
    fc.string({ maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, '')),
    fc.constantFrom(
      'application/json',
      'application/json; charset=utf-16',
      'application/json; charset=latin1',
      'text/plain',
      'multipart/form-data; boundary=x',
      'application/x-www-form-urlencoded',
      '*/*',
      'text/event-stream',
      `Bearer ${KEY}`,
      `bearer  ${KEY}`,
      'Bearer',
      'Basic Zm9vOmJhcg==',
      'gzip',
      'deflate',
      'br',
      'identity',
    ),
  );
  const request = fc.record({
    method: fc.oneof({ arbitrary: fc.constant('POST'), weight: 4 }, fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'FOO', 'G E T')),
    path: fc.constantFrom('/v1/sessions', `/v1/sessions/${'0'.repeat(8)}`, '/v1/tools/execute_python', '/execute', '/v1/run/', '/mcp', '/nope', '*', '//', '/v1/sessions?status=%ZZ'),
    contentType: fc.option(headerValue),
    accept: fc.option(headerValue),
    authorization: fc.oneof({ arbitrary: fc.constant(`Bearer ${KEY}`), weight: 3 }, fc.option(headerValue)),
    encoding: fc.option(headerValue),
    body: fc.oneof(fc.constant(''), fc.constant('{"code":"print(1)"}'), fc.constant('{}'), fc.string({ maxLength: 40 }), json.map((j) => JSON.stringify(j))),
    framing: fc.constantFrom('exact', 'short', 'long', 'chunked', 'chunked-bad', 'none'),
  });
  let unanswered = 0;
  await fc.assert(
    fc.asyncProperty(request, async (q) => {
      const body = Buffer.from(q.body, 'utf8');
      const lines = [`${q.method} ${q.path} HTTP/1.1`, 'Host: fuzz', 'Connection: close'];
      if (q.contentType !== null) lines.push(`Content-Type: ${q.contentType}`);
      if (q.accept !== null) lines.push(`Accept: ${q.accept}`);
      if (q.authorization !== null) lines.push(`Authorization: ${q.authorization}`);
      if (q.encoding !== null) lines.push(`Content-Encoding: ${q.encoding}`);
      let payload: Buffer = body;
      if (q.framing === 'exact') lines.push(`Content-Length: ${body.length}`);
      if (q.framing === 'short') lines.push(`Content-Length: ${Math.max(0, body.length - 3)}`);
      if (q.framing === 'long') lines.push(`Content-Length: ${body.length + 10}`);
      if (q.framing === 'chunked' || q.framing === 'chunked-bad') {
        lines.push('Transfer-Encoding: chunked');
        payload = Buffer.from(q.framing === 'chunked' ? `${body.length.toString(16)}\r\n${q.body}\r\n0\r\n\r\n` : `zz\r\n${q.body}\r\n`);
      }
      // Connection: close, so the answer ends when the server closes; a body that never fully comes gets 1 s
      const waiting = q.framing === 'long' || q.framing === 'chunked-bad';
      const r = await raw(Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), payload]), waiting ? 1000 : 30_000);
      tally('raw headers', r?.status ?? 0);
      if (r === null) {
        // only a body declared longer than sent (or an unfinished chunked body) may leave the server waiting
        expect(['long', 'chunked-bad']).toContain(q.framing);
        unanswered++;
        return;
      }
      if (q.method === 'HEAD') {
        expect(r.status).toBeLessThan(500);
        return;
      }
      handled(r, q);
      if (r.status === 201 && r.body?.id) {
        made.sessions++;
        await http.delete(`/v1/sessions/${r.body.id}`);
      }
      if (r.status === 200 && r.body?.session_created) {
        made.toolSessions++;
        await http.delete(`/v1/sessions/${r.body.session_id}`);
      }
    }),
    { numRuns: RUNS * 2 },
  );
  expect(unanswered).toBeLessThan(RUNS * 2);
  // A valid create followed by bytes past its declared body ("short" or "none" framing) is made,
  // but its 201 loses to the 400 for the garbage on that connection: sessions of the key, removed here.
  // Such a create may still be making its container when the garbage's 400 arrives: sweep until a
  // listing a second after the last removal shows none.
  for (let quiet = 0; quiet < 2; ) {
    const live = ((await admin.get('/v1/sessions')).body.sessions as { id: string; status: string }[]).filter(
      (x) => x.id !== fixed && x.status !== 'terminated',
    );
    quiet = live.length === 0 ? quiet + 1 : 0;
    for (const x of live) {
      made.answerLost++;
      expect((await admin.delete(`/v1/sessions/${x.id}`)).status).toBe(204);
    }
    await sleep(1000);
  }
});
