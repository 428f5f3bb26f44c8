//! Events: the transactional outbox a service writes to, the relay that gives committed events
//! their feed positions, the gRPC feed other services subscribe to, and the consumer that applies
//! another service's events exactly once.
//!
//! Why positions are assigned after commit: a sequence value taken inside a writer's transaction
//! becomes visible in commit order, not in number order, so a reader trusting `id > last_seen`
//! would skip an event whose transaction commits late. Here writers insert with no position; one
//! relay at a time (an advisory transaction lock serialises relays across replicas) numbers the
//! committed rows `max(position) + 1 …` in one transaction. A reader therefore sees positions
//! appear only as complete prefixes: never 12 without 11.

mod consumer;
mod feed;
mod outbox;

pub use consumer::{decode_payload, Consumer, EventHandler, Outcome, MAX_ATTEMPTS};
pub use feed::EventFeedService;
pub use outbox::{append, rewrite_payloads, EventLog, NewEvent, EVENTS_ABOUT};
