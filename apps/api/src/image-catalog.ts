import type { Caller } from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from './context';
import { runThrowaway } from './tool-runs';

export const ImageDescription = z
  .object({
    image: z.string(),
    default: z.boolean(),
    languages: z.object({ python3: z.string(), nodejs: z.string().nullable() }).meta({ description: 'Interpreter versions; nodejs is null when the image has no node.' }),
    packages: z.array(z.object({ name: z.string(), version: z.string() })).meta({ description: 'Python distributions importable in a session, lower-case names.' }),
  })
  .meta({ id: 'ImageDescription' });
export type ImageDescription = z.infer<typeof ImageDescription>;

// Asks the image itself, so an operator's own image (SESSIONBOX_IMAGE) is described as truly as ours.
const PROBE = `
import importlib.metadata as _m, json as _j, platform as _pf, shutil as _sh, subprocess as _sp
_pk = {}
for _d in _m.distributions():
    _n = (_d.metadata["Name"] or "").lower()
    if _n:
        _pk[_n] = _d.version
_node = None
if _sh.which("node"):
    _node = _sp.run(["node", "--version"], capture_output=True, text=True).stdout.strip().lstrip("v") or None
print(_j.dumps({"python3": _pf.python_version(), "nodejs": _node, "packages": [{"name": n, "version": v} for n, v in sorted(_pk.items())]}))
`;

const Probe = z.object({ python3: z.string(), nodejs: z.string().nullable(), packages: ImageDescription.shape.packages });

/**
 * What a client can import in a session: probed once per API process in a throwaway session
 * (the image does not change under a running API) and then answered from memory.
 */
export class ImageCatalog {
  private pending: Promise<ImageDescription> | null = null;

  constructor(private readonly ctx: ApiContext) {}

  describe(caller: Caller): Promise<ImageDescription> {
    if (!this.pending) {
      this.pending = this.probe(caller);
      // A failed probe (no capacity, engine down) is not remembered.
      this.pending.catch(() => (this.pending = null));
    }
    return this.pending;
  }

  private async probe(caller: Caller): Promise<ImageDescription> {
    const { ctx } = this;
    return runThrowaway(ctx, { code: PROBE, caller, base: '', metadata: { via: 'image-catalog' } }, async ({ record }) => {
      if (record.status !== 'succeeded') throw new Error(`the image probe ${record.status}: ${record.error?.value ?? record.cause ?? ''}`);
      const found = Probe.parse(JSON.parse(record.stdout.trim().split('\n').at(-1) ?? ''));
      return { image: ctx.config.image, default: true, languages: { python3: found.python3, nodejs: found.nodejs }, packages: found.packages };
    });
  }
}
