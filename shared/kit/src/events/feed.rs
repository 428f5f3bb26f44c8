//! The `guestloop.common.v1.EventFeed` server, mounted on every service.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use guestloop_proto::common::v1::event_feed_server::EventFeed;
use guestloop_proto::common::v1::{
    Event, GetFeedStatusRequest, GetFeedStatusResponse, ListEventsRequest, ListEventsResponse,
    SubscribeEventsRequest,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::EventLog;
use crate::auth::{principal, Principal, PropertyScope, Role};
use crate::error::ApiError;

const STREAM_BATCH: i64 = 500;
const MAX_PAGE: i32 = 1000;
/// How often a subscriber re-reads when it hears nothing (events from other replicas).
const IDLE_POLL: Duration = Duration::from_millis(250);

pub struct EventFeedService {
    log: EventLog,
    stop: watch::Receiver<bool>,
}

impl EventFeedService {
    /// `stop` ends every open subscription when the server shuts down.
    pub fn new(log: EventLog, stop: watch::Receiver<bool>) -> Self {
        Self { log, stop }
    }
}

fn check_after(after: i64) -> Result<(), ApiError> {
    if after < 0 {
        return Err(ApiError::invalid("after_position", "must be 0 or greater"));
    }
    Ok(())
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

/// Which events a caller may read. The service role reads the whole log (consumers); chain roles
/// read their chain's events within their property scope, and events that carry no chain only
/// for a property their token lists.
#[derive(Clone)]
enum Reader {
    Everything,
    Scoped(Principal),
}

impl Reader {
    fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        let principal = principal(request)?;
        Ok(if principal.role() == Role::Service {
            Reader::Everything
        } else {
            Reader::Scoped(principal.clone())
        })
    }

    /// Whether the caller may read `event`; `chains` holds the chain each property of the
    /// chainless events is registered under (a chainless event of a property another chain
    /// holds is that chain's, whatever the token lists).
    fn may_read(&self, event: &Event, chains: &HashMap<String, String>) -> bool {
        let Reader::Scoped(principal) = self else {
            return true;
        };
        if !event.chain_id.is_empty() {
            event.chain_id == principal.chain_id()
                && (event.property_id.is_empty()
                    || principal.can_access_property(&event.property_id))
        } else {
            !event.property_id.is_empty()
                && matches!(principal.claims.props, PropertyScope::Listed(_))
                && principal.can_access_property(&event.property_id)
                && chains
                    .get(&event.property_id)
                    .is_none_or(|chain| chain == principal.chain_id())
        }
    }

    /// The events of `events` the caller may read.
    async fn readable(&self, log: &EventLog, events: Vec<Event>) -> Result<Vec<Event>, ApiError> {
        let chains = match self {
            Reader::Everything => HashMap::new(),
            Reader::Scoped(_) => {
                let mut properties: Vec<&str> = events
                    .iter()
                    .filter(|e| e.chain_id.is_empty() && !e.property_id.is_empty())
                    .map(|e| e.property_id.as_str())
                    .collect();
                properties.sort_unstable();
                properties.dedup();
                if properties.is_empty() {
                    HashMap::new()
                } else {
                    let mut conn = log.pool.acquire().await?;
                    crate::tenancy::chains_of(&mut conn, &properties).await?
                }
            }
        };
        Ok(events
            .into_iter()
            .filter(|e| self.may_read(e, &chains))
            .collect())
    }
}

/// Whether the token a subscription was opened with has expired (a service's too).
fn expired(principal: &Principal) -> bool {
    principal.claims.exp <= chrono::Utc::now().timestamp()
}

#[tonic::async_trait]
impl EventFeed for EventFeedService {
    type SubscribeEventsStream = EventStream;

    async fn subscribe_events(
        &self,
        request: Request<SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeEventsStream>, Status> {
        let reader = Reader::of(&request)?;
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        check_after(request.after_position)?;
        let (sender, receiver) = mpsc::channel(STREAM_BATCH as usize);
        let log = self.log.clone();
        let mut stop = self.stop.clone();
        let mut head = log.subscribe_head();
        tokio::spawn(async move {
            let mut after = request.after_position;
            loop {
                // A server shutting down ends its subscriptions, also one opened after the
                // stop (whose receiver sees no further change); a subscription lasts as long
                // as the token it was opened with.
                if *stop.borrow() {
                    return;
                }
                if expired(&caller) {
                    let _ = sender
                        .send(Err(Status::unauthenticated(
                            "the token expired; subscribe again with a fresh one",
                        )))
                        .await;
                    return;
                }
                let read = match log.read(after, &request.event_types, STREAM_BATCH).await {
                    Ok(events) => {
                        let full = events.len() as i64 == STREAM_BATCH;
                        let last = events.last().map(|e| e.position);
                        reader
                            .readable(&log, events)
                            .await
                            .map(|events| (events, full, last))
                    }
                    Err(error) => Err(ApiError::from(error)),
                };
                match read {
                    Ok((events, full, last)) => {
                        for event in events {
                            if sender.send(Ok(event)).await.is_err() {
                                return; // the subscriber went away
                            }
                        }
                        if let Some(last) = last {
                            after = last;
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(error) => {
                        let status: Status = error.into();
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                }
                tokio::select! {
                    _ = head.changed() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = sender.closed() => return,
                    _ = stop.changed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let reader = Reader::of(&request)?;
        let request = request.into_inner();
        check_after(request.after_position)?;
        let page_size = match request.page_size {
            0 => 100,
            n if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(
                    "page_size",
                    format!("must be between 1 and {MAX_PAGE}"),
                )
                .into())
            }
        };
        let events = self
            .log
            .read(
                request.after_position,
                &request.event_types,
                i64::from(page_size),
            )
            .await
            .map_err(ApiError::from)?;
        let next = events.last().map_or(request.after_position, |e| e.position);
        Ok(Response::new(ListEventsResponse {
            events: reader.readable(&self.log, events).await?,
            next_after_position: next,
        }))
    }

    async fn get_feed_status(
        &self,
        _request: Request<GetFeedStatusRequest>,
    ) -> Result<Response<GetFeedStatusResponse>, Status> {
        let (head, pending) = self.log.status().await.map_err(ApiError::from)?;
        Ok(Response::new(GetFeedStatusResponse {
            service: self.log.service.to_string(),
            head_position: head,
            unpositioned: pending,
        }))
    }
}
