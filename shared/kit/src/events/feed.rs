//! The `guestloop.common.v1.EventFeed` server, mounted on every service.

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

    fn may_read(&self, event: &Event) -> bool {
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
        }
    }
}

#[tonic::async_trait]
impl EventFeed for EventFeedService {
    type SubscribeEventsStream = EventStream;

    async fn subscribe_events(
        &self,
        request: Request<SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeEventsStream>, Status> {
        let reader = Reader::of(&request)?;
        let request = request.into_inner();
        check_after(request.after_position)?;
        let (sender, receiver) = mpsc::channel(STREAM_BATCH as usize);
        let log = self.log.clone();
        let mut stop = self.stop.clone();
        let mut head = log.subscribe_head();
        tokio::spawn(async move {
            let mut after = request.after_position;
            loop {
                match log.read(after, &request.event_types, STREAM_BATCH).await {
                    Ok(events) => {
                        let full = events.len() as i64 == STREAM_BATCH;
                        for event in events {
                            after = event.position;
                            if !reader.may_read(&event) {
                                continue;
                            }
                            if sender.send(Ok(event)).await.is_err() {
                                return; // the subscriber went away
                            }
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(error) => {
                        let status: Status = ApiError::from(error).into();
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
            events: events.into_iter().filter(|e| reader.may_read(e)).collect(),
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
