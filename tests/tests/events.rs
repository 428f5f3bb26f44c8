//! The event feed under concurrent writers: every event is delivered exactly once, in position
//! order, with no gaps, even when transactions commit out of order and the subscriber is killed
//! and restarted mid-way.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use guestloop_kit::auth::Role;
use guestloop_kit::db;
use guestloop_kit::error::ApiError;
use guestloop_kit::events::{append, Consumer, EventHandler, EventLog, NewEvent, Outcome};
use guestloop_proto::common::v1::event_feed_client::EventFeedClient;
use guestloop_proto::common::v1::{Event, Money, SubscribeEventsRequest};
use guestloop_testkit::{spawn_service, test_settings, TokenBuilder};
use rand::Rng;
use secrecy::SecretString;
use sqlx::{PgConnection, PgPool};

const WRITERS: usize = 8;
const EVENTS_PER_WRITER: usize = 1000;
const TOTAL: i64 = (WRITERS * EVENTS_PER_WRITER) as i64;

/// Records every delivered event and any break in position order.
struct Recorder {
    last: Arc<AtomicI64>,
    out_of_order: Arc<AtomicI64>,
}

impl EventHandler for Recorder {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), ApiError> {
        {
            // Checked against what is committed (an aborted consumer's last apply rolls back),
            // under the cursor row lock that serialises applies.
            let previous: i64 =
                sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM test_seen")
                    .fetch_one(&mut *conn)
                    .await?;
            if event.position != previous + 1 {
                self.out_of_order.fetch_add(1, Ordering::SeqCst);
            }
            self.last.store(event.position, Ordering::SeqCst);
            sqlx::query("INSERT INTO test_seen (position, event_id) VALUES ($1, $2)")
                .bind(event.position)
                .bind(&event.event_id)
                .execute(conn)
                .await?;
            Ok(())
        }
    }
}

/// A pool in another service's schema (with that service's migrations), where a test consumer
/// lives, and its `test_seen` table of applied events.
async fn consumer_pool(url: &SecretString) -> anyhow::Result<PgPool> {
    let settings = test_settings();
    let pool = db::pool(
        db::connect_options(url, "facilities", &settings.database)?,
        &settings.database,
    );
    db::prepare(
        &pool,
        "facilities",
        guestloop_facilities::DEFINITION.migrator,
        &settings.database,
    )
    .await?;
    sqlx::query("CREATE TABLE test_seen (position bigint NOT NULL, event_id text NOT NULL)")
        .execute(&pool)
        .await?;
    Ok(pool)
}

async fn seen(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM test_seen")
        .fetch_one(pool)
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_are_delivered_exactly_once_in_order() -> anyhow::Result<()> {
    let producer = spawn_service(&guestloop_crm::DEFINITION).await?;
    let settings = test_settings();

    // Writers use the producer's schema, as the producer's handlers would.
    let mut writer_db = settings.database.clone();
    writer_db.max_connections = WRITERS as u32 + 2;
    let writers_pool = db::pool(
        db::connect_options(&producer.database.url, "crm", &writer_db)?,
        &writer_db,
    );

    let consumer_pool = consumer_pool(&producer.database.url).await?;

    let token = TokenBuilder::new(Role::Service).mint()?;
    let feed = EventFeedClient::new(producer.channel_with_token(&token).await?);
    let last = Arc::new(AtomicI64::new(0));
    let out_of_order = Arc::new(AtomicI64::new(0));
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let start_consumer = |feed: EventFeedClient<_>| {
        let consumer = Consumer::new(
            "facilities<-crm:test",
            consumer_pool.clone(),
            Vec::new(),
            Recorder {
                last: last.clone(),
                out_of_order: out_of_order.clone(),
            },
        );
        tokio::spawn(consumer.run(feed, stop_rx.clone()))
    };
    let first_consumer = start_consumer(feed.clone());

    // A raw gRPC subscriber alongside, checking the stream itself.
    let mut raw_feed = feed.clone();
    let raw = tokio::spawn(async move {
        let mut stream = raw_feed
            .subscribe_events(SubscribeEventsRequest {
                after_position: 0,
                event_types: vec![],
            })
            .await?
            .into_inner();
        let mut expected = 1;
        while expected <= TOTAL {
            let event = stream
                .message()
                .await?
                .ok_or_else(|| anyhow::anyhow!("stream ended early"))?;
            anyhow::ensure!(
                event.position == expected,
                "got position {} expecting {expected}",
                event.position
            );
            expected += 1;
        }
        anyhow::Ok(())
    });

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let pool = writers_pool.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..EVENTS_PER_WRITER {
                let mut tx = pool.begin().await?;
                append(
                    &mut tx,
                    NewEvent {
                        event_type: "test.written",
                        subject: format!("writers/{writer}/{i}"),
                        chain_id: "chain-test",
                        property_id: "",
                        payload: &Money {
                            currency_code: "EUR".into(),
                            minor_units: i as i64,
                        },
                    },
                )
                .await?;
                // Random commit delays make transactions commit out of insertion order.
                let delay = rand::rng().random_range(0..4_000u64);
                tokio::time::sleep(Duration::from_micros(delay)).await;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }

    // Kill the consumer part-way through and start a new one with the same cursor.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen(&consumer_pool).await? < TOTAL / 3 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "consumer made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first_consumer.abort();
    let _ = first_consumer.await;
    let killed_at = seen(&consumer_pool).await?;
    let second_consumer = start_consumer(feed.clone());

    for writer in writers {
        writer.await??;
    }
    while seen(&consumer_pool).await? < TOTAL {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not every event arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a duplicate the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    second_consumer.abort();
    tokio::time::timeout(Duration::from_secs(60), raw).await???;

    let (count, distinct_ids, distinct_positions, min, max): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT event_id), count(DISTINCT position), min(position), max(position) FROM test_seen",
    )
    .fetch_one(&consumer_pool)
    .await?;
    assert!(
        killed_at > 0 && killed_at < TOTAL,
        "the consumer was killed mid-way ({killed_at})"
    );
    assert_eq!(
        (count, distinct_ids, distinct_positions, min, max),
        (TOTAL, TOTAL, TOTAL, 1, TOTAL)
    );
    // Every event the writers committed is among those delivered.
    let missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.outbox_events o WHERE NOT EXISTS \
         (SELECT 1 FROM test_seen s WHERE s.event_id = o.event_id::text)",
    )
    .fetch_one(&consumer_pool)
    .await?;
    assert_eq!(missing, 0);
    assert_eq!(
        out_of_order.load(Ordering::SeqCst),
        0,
        "events arrived out of position order"
    );
    producer.shutdown().await
}

/// Refuses position 3 for good and fails position 5 once, as a briefly unavailable peer would.
struct Picky {
    failed_once: std::sync::atomic::AtomicBool,
}

impl EventHandler for Picky {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), ApiError> {
        sqlx::query("INSERT INTO test_seen (position, event_id) VALUES ($1, $2)")
            .bind(event.position)
            .bind(&event.event_id)
            .execute(&mut *conn)
            .await?;
        match event.position {
            3 => Err(ApiError::invalid("payload", "not for this consumer")),
            5 if !self.failed_once.swap(true, Ordering::SeqCst) => {
                Err(ApiError::Unavailable("peer is restarting".into()))
            }
            _ => Ok(()),
        }
    }
}

fn synthetic(position: i64) -> Event {
    Event {
        position,
        event_id: format!("e{position}"),
        event_type: "test.written".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_batch_dead_letters_alone_and_keeps_what_came_before_a_transient_failure(
) -> anyhow::Result<()> {
    use guestloop_kit::events::Outcome::{Applied, Skipped};
    let database = guestloop_testkit::fresh_database().await?;
    let pool = consumer_pool(&database.url).await?;
    let consumer = Consumer::new(
        "batch:test",
        pool.clone(),
        Vec::new(),
        Picky {
            failed_once: false.into(),
        },
    );
    let events: Vec<Event> = (1..=6).map(synthetic).collect();

    // 1, 2 and 4 apply; 3 is dead-lettered with its effects undone; 5 fails transiently, so
    // the batch stops there with the cursor on 4 and the error reaches the caller.
    let error = consumer
        .apply_batch(&events)
        .await
        .expect_err("the transient failure is reported");
    assert!(matches!(error, ApiError::Unavailable(_)), "{error:?}");
    assert_eq!(consumer.cursor().await?, 4);
    let seen: Vec<i64> = sqlx::query_scalar("SELECT position FROM test_seen ORDER BY position")
        .fetch_all(&pool)
        .await?;
    assert_eq!(seen, vec![1, 2, 4]);
    let dead: Vec<(i64, String)> = sqlx::query_as(
        "SELECT position, event_id FROM consumer_dead_letters WHERE consumer = 'batch:test'",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(dead, vec![(3, "e3".to_string())]);

    // Redelivered from the start, the batch skips what is done and applies the rest once.
    let outcomes = consumer.apply_batch(&events).await?;
    assert_eq!(
        outcomes,
        vec![Skipped, Skipped, Skipped, Skipped, Applied, Applied]
    );
    assert_eq!(consumer.cursor().await?, 6);
    let seen: Vec<i64> = sqlx::query_scalar("SELECT position FROM test_seen ORDER BY position")
        .fetch_all(&pool)
        .await?;
    assert_eq!(seen, vec![1, 2, 4, 5, 6]);

    // A batch of old events changes nothing.
    assert_eq!(
        consumer.apply_batch(&events[..2]).await?,
        vec![Skipped, Skipped]
    );
    assert_eq!(consumer.cursor().await?, 6);
    Ok(())
}

/// Fails position 2 with a fault of its own (not a refusal): every time, or once.
struct Faulty {
    always: bool,
    failed_once: std::sync::atomic::AtomicBool,
}

impl EventHandler for Faulty {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), ApiError> {
        sqlx::query("INSERT INTO test_seen (position, event_id) VALUES ($1, $2)")
            .bind(event.position)
            .bind(&event.event_id)
            .execute(&mut *conn)
            .await?;
        if event.position == 2 && (self.always || !self.failed_once.swap(true, Ordering::SeqCst)) {
            return Err(ApiError::internal("disk full"));
        }
        Ok(())
    }
}

/// A fault that is not the event's (the database failing, say) is retried rather than
/// dead-lettered at once; one that happens every time is dead-lettered after MAX_ATTEMPTS
/// tries, so the events after it are not held up for ever.
#[tokio::test]
async fn a_fault_is_retried_and_only_a_lasting_one_dead_lettered() -> anyhow::Result<()> {
    use guestloop_kit::events::MAX_ATTEMPTS;
    let database = guestloop_testkit::fresh_database().await?;
    let pool = consumer_pool(&database.url).await?;
    let events: Vec<Event> = (1..=3).map(synthetic).collect();
    let dead = |name: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM consumer_dead_letters WHERE consumer = $1",
            )
            .bind(name)
            .fetch_one(&pool)
            .await
        }
    };
    let once = Consumer::new(
        "fault:once",
        pool.clone(),
        Vec::new(),
        Faulty {
            always: false,
            failed_once: false.into(),
        },
    );
    // The batch as a whole fails; applied again event by event, the fault is gone.
    assert_eq!(
        once.apply_batch(&events).await?,
        vec![Outcome::Applied, Outcome::Applied, Outcome::Applied]
    );
    assert_eq!((once.cursor().await?, dead("fault:once").await?), (3, 0));

    sqlx::query("TRUNCATE test_seen").execute(&pool).await?;
    let always = Consumer::new(
        "fault:always",
        pool.clone(),
        Vec::new(),
        Faulty {
            always: true,
            failed_once: false.into(),
        },
    );
    for attempt in 1..MAX_ATTEMPTS {
        always
            .apply_batch(&events)
            .await
            .expect_err("retried, not dead-lettered yet");
        assert_eq!(always.cursor().await?, 1, "attempt {attempt}");
    }
    always.apply_batch(&events).await?;
    assert_eq!(
        (always.cursor().await?, dead("fault:always").await?),
        (3, 1)
    );
    Ok(())
}

static PAYLOAD: Money = Money {
    currency_code: String::new(),
    minor_units: 1,
};

fn written(subject: &str) -> NewEvent<'static, Money> {
    NewEvent {
        event_type: "test.written",
        subject: subject.to_string(),
        chain_id: "chain-test",
        property_id: "",
        payload: &PAYLOAD,
    }
}

/// The relay scans unpositioned events from the oldest transaction still running at its last
/// complete pass. A transaction that took its id before younger ones wrote and committed
/// events, and writes its own event only afterwards, must still see that event positioned
/// (a horizon taken from the positioned events' own transactions would skip it for good).
#[tokio::test]
async fn an_event_of_a_transaction_older_than_positioned_ones_still_gets_a_position(
) -> anyhow::Result<()> {
    let database = guestloop_testkit::fresh_database().await?;
    let settings = test_settings();
    let pool = db::pool(
        db::connect_options(&database.url, "crm", &settings.database)?,
        &settings.database,
    );
    db::prepare(
        &pool,
        "crm",
        guestloop_crm::DEFINITION.migrator,
        &settings.database,
    )
    .await?;
    let log = EventLog::new(pool.clone(), "crm");

    let mut old = pool.begin().await?;
    let old_txid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *old)
        .await?;
    for i in 0..3 {
        let mut young = pool.begin().await?;
        append(&mut young, written(&format!("young/{i}"))).await?;
        young.commit().await?;
        assert_eq!(log.position_batch().await?, (1, Some(i + 1)));
    }
    assert_eq!(log.position_batch().await?, (0, None));

    append(&mut old, written("old")).await?;
    old.commit().await?;
    assert_eq!(log.position_batch().await?, (1, Some(4)));
    let (subject, younger_before): (String, i64) = sqlx::query_as(
        "SELECT subject, (SELECT count(*) FROM outbox_events y WHERE y.position < 4 AND y.txid > o.txid) \
         FROM outbox_events o WHERE position = 4 AND txid = $1::text::xid8",
    )
    .bind(&old_txid)
    .fetch_one(&pool)
    .await?;
    assert_eq!(subject, "old");
    assert_eq!(
        younger_before, 3,
        "the three younger events were positioned first"
    );
    assert_eq!(log.position_batch().await?, (0, None));
    Ok(())
}

/// An erasure finds the events about its objects by index, not by reading the whole log (which
/// is never pruned), in every service's schema; CRM's tier events too.
#[tokio::test]
async fn events_about_an_object_are_found_by_index() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let pool = service.database.admin_pool().await?;
    let mut conn = pool.acquire().await?;
    sqlx::query("SET search_path TO complaints")
        .execute(&mut *conn)
        .await?;
    // Small tables are read whole whatever the indexes; the plan with scans discouraged shows
    // whether an index can serve the query.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await?;
    let plan: Vec<String> =
        sqlx::query_scalar(&format!("EXPLAIN {}", guestloop_kit::events::EVENTS_ABOUT))
            .bind("complaints")
            .bind(vec!["0191c2a4-7e1f-7000-8000-000000000001".to_string()])
            .fetch_all(&mut *conn)
            .await?;
    assert!(
        plan.iter()
            .any(|line| line.contains("outbox_events_by_object")),
        "{plan:#?}"
    );
    service.shutdown().await
}

/// An event without a chain (written before events carried one) of a property another chain
/// holds is that chain's: a token of another chain listing the property reads nothing of it,
/// while the property's own chain does. A subscription ends when its token expires.
#[tokio::test]
async fn a_chainless_event_is_read_only_by_its_propertys_chain() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let pool = service.database.admin_pool().await?;
    sqlx::query("INSERT INTO facilities.property_chains (property_id, chain_id) VALUES ('porto', 'chain-a')")
        .execute(&pool)
        .await?;
    let mut conn = pool.acquire().await?;
    sqlx::query("SET search_path TO facilities")
        .execute(&mut *conn)
        .await?;
    append(
        &mut conn,
        NewEvent {
            event_type: "test.written",
            subject: "work_orders/old".to_string(),
            chain_id: "",
            property_id: "porto",
            payload: &PAYLOAD,
        },
    )
    .await?;
    drop(conn);
    let read = |chain: &'static str| {
        let service = &service;
        async move {
            let token = TokenBuilder::new(Role::ChainQualityManager)
                .chain(chain)
                .properties(&["porto"])
                .mint()?;
            let mut feed = EventFeedClient::new(service.channel_with_token(&token).await?);
            anyhow::Ok(
                feed.list_events(guestloop_proto::common::v1::ListEventsRequest {
                    after_position: 0,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .events
                .len(),
            )
        }
    };
    // The relay positions the event within moments.
    let mut own = 0;
    for _ in 0..100 {
        own = read("chain-a").await?;
        if own == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(own, 1, "the property's own chain reads it");
    assert_eq!(
        read("chain-b").await?,
        0,
        "another chain listing the property does not"
    );

    // A token about to expire: its subscription ends (UNAUTHENTICATED) once it has.
    let expiring = TokenBuilder::new(Role::ChainQualityManager)
        .chain("chain-a")
        .properties(&["porto"])
        .mint_expiring_in(2)?;
    let mut feed = EventFeedClient::new(service.channel_with_token(&expiring).await?);
    let mut stream = feed
        .subscribe_events(SubscribeEventsRequest {
            after_position: 0,
            event_types: Vec::new(),
        })
        .await?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message()).await??;
    assert!(first.is_some());
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await?
        .expect_err("the token expired");
    assert_eq!(ended.code(), tonic::Code::Unauthenticated, "{ended:?}");
    service.shutdown().await
}
