export { CLEANUP_KINDS, RECONCILE_KINDS, Cleanup, emptySummary, reconcileOnStart, waitForRedis } from './cleanup';
export type { CleanupKind, CleanupAction, CleanupPlan, CleanupSummary, KillResult } from './cleanup';
export { HostMonitor } from './host-monitor';
export { Reaper } from './reaper';
export { INVENTORY_STATES, SessionInventory } from './session-inventory';
export type { InventoryState, InventoryRow, InventorySnapshot } from './session-inventory';
