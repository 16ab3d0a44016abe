import http from 'node:http';

export interface JsonResponse<T = any> {
  status: number;
  body: T;
}

/** A lean keep-alive JSON client (node:http), so the client's own cost stays small in the numbers. */
export class JsonClient {
  private readonly agent: http.Agent;
  private readonly url: URL;

  constructor(base: string, maxSockets = 256) {
    this.url = new URL(base);
    this.agent = new http.Agent({ keepAlive: true, maxSockets });
  }

  request<T = any>(method: string, path: string, body?: unknown): Promise<JsonResponse<T>> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: this.url.hostname,
          port: this.url.port,
          method,
          path,
          agent: this.agent,
          headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const raw = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = raw;
            if ((res.headers['content-type'] ?? '').includes('json') && raw) parsed = JSON.parse(raw);
            resolve({ status: res.statusCode ?? 0, body: parsed as T });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  async createSession(body: Record<string, unknown> = {}) {
    const r = await this.request('POST', '/v1/sessions', body);
    if (r.status !== 201) throw new Error(`create session: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as { id: string; expiresAt: string; [k: string]: any };
  }

  async run(sessionId: string, code: string) {
    const r = await this.request('POST', `/v1/sessions/${sessionId}/executions?wait=true`, { code });
    if (r.status !== 200) throw new Error(`execute: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as { status: string; stdout: string; figures: unknown[]; [k: string]: any };
  }

  async deleteSession(id: string) {
    const r = await this.request('DELETE', `/v1/sessions/${id}`);
    if (r.status !== 204 && r.status !== 410 && r.status !== 404) throw new Error(`delete session: ${r.status}`);
  }

  close() {
    this.agent.destroy();
  }
}
