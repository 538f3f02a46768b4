//! Event delivery from the transactional outbox. Every money movement already writes its
//! events to the `outbox` table in the same transaction (see `store::ledger`); the relay that
//! publishes them (Redis Streams through fred, or in-process) is delivered by the events issue.
//! Until then the outbox table is the durable queue and nothing reads it.
