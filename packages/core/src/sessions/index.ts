export { sessionLabels } from './session-service';
export { toApiSession } from './session-store';
export type { SessionRecord } from './session-store';
export { FillSlots, PoolEntry, WarmPool, warmClaimer } from './warm-pool';
export { WarmPools } from './warm-pools';
export { disabledWarmPool } from './warm-pool-control';
export type { WarmPoolControl } from './warm-pool-control';
