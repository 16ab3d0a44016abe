import { hibernationMethod } from '@sessionbox/core';

// Pure: which path a hibernation takes (the engine without `experimental` cannot be set up on the
// test machine, whose engine is shared, so the fallback's choice is checked here).
describe('hibernationMethod', () => {
  test('a whole-container checkpoint only under runsc on an engine that allows checkpoints', () => {
    expect(hibernationMethod({ ociRuntime: 'runsc', engineCheckpoints: true })).toBe('checkpoint');
  });
  test('the dill path otherwise: engine without experimental, runc (CRIU fails on our kernels), or an unknown container', () => {
    expect(hibernationMethod({ ociRuntime: 'runsc', engineCheckpoints: false })).toBe('dill');
    expect(hibernationMethod({ ociRuntime: 'runc', engineCheckpoints: true })).toBe('dill');
    expect(hibernationMethod({ ociRuntime: 'runc', engineCheckpoints: false })).toBe('dill');
    expect(hibernationMethod({ ociRuntime: undefined, engineCheckpoints: true })).toBe('dill');
  });
});
