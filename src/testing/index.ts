/**
 * `pgsession/testing`: the store contract, for authors of session stores. Register its tests
 * with your runner's `describe` and `it` (vitest, node:test, mocha, jest): it imports no test
 * framework and asserts with `node:assert`. See docs/stores.md.
 */

export type {
  SessionChange,
  SessionJSON,
  SessionListing,
  SessionRecord,
  SessionStore,
  StoreCallOptions,
} from '../core/store.js';
export {
  type ConnectStoreContractOptions,
  type ConnectStoreLike,
  connectStoreContract,
} from './connect-contract.js';
export {
  CONTRACT_T0,
  type ContractRunner,
  contractChange,
  contractRecord,
  type StoreContractOptions,
  type StoreLimits,
  storeContract,
} from './store-contract.js';
