import { hibernationMethod } from '@sessionbox/core';

// Pure: which path a hibernation takes (the engine without `experimental` cannot be set up on the
// test machine, whose engine is shared, so the fallback's choice is checked here).
describe('hibernationMethod', () => {
  const fresh = { setting: 'auto', restoredBefore: false } as const;
  test('a whole-container checkpoint only under runsc, on an engine that allows checkpoints, for a container never restored', () => {
    expect(hibernationMethod({ ociRuntime: 'runsc', engineCheckpoints: true, ...fresh })).toBe('checkpoint');
  });
  test('the dill path otherwise: engine without experimental, runc (CRIU fails on our kernels), an unknown container', () => {
    expect(hibernationMethod({ ociRuntime: 'runsc', engineCheckpoints: false, ...fresh })).toBe('dill');
    expect(hibernationMethod({ ociRuntime: 'runc', engineCheckpoints: true, ...fresh })).toBe('dill');
    expect(hibernationMethod({ ociRuntime: 'runc', engineCheckpoints: false, ...fresh })).toBe('dill');
    expect(hibernationMethod({ ociRuntime: undefined, engineCheckpoints: true, ...fresh })).toBe('dill');
  });
  test('a container already started from a checkpoint is not checkpointed again (the engine cannot restore it twice)', () => {
    expect(hibernationMethod({ ociRuntime: 'runsc', engineCheckpoints: true, setting: 'auto', restoredBefore: true })).toBe('dill');
  });
  test('never when the operator turned it off (SESSIONBOX_HIBERNATE_CHECKPOINT=off)', () => {
    expect(hibernationMethod({ ociRuntime: 'runsc', engineCheckpoints: true, setting: 'off', restoredBefore: false })).toBe('dill');
  });
});
