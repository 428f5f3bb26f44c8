//! Demo data for `guestloop up --demo`: 3,000 guests of the demo chain (the ids the complaints
//! demo refers to), with a year of stays at the demo properties, likes and dislikes, ledgers
//! earned from those stays, and tiers evaluated from them. Deterministic.

use chrono::{Duration, Utc};
use guestloop_kit::demo::{DemoRandom, DEMO_CHAIN, DEMO_PROPERTIES};
use sqlx::{PgPool, QueryBuilder};
use uuid::Uuid;

use crate::domain::tiers::{qualified, Qualifying, TierPolicy};

const GUESTS: u64 = 3000;
const GIVEN: [&str; 16] = [
    "Anna", "Luca", "Sofia", "Kenji", "Amara", "Noah", "Mei", "Omar", "Elena", "Jonas", "Priya",
    "Mateo", "Chloe", "Yuki", "Lars", "Zara",
];
const FAMILY: [&str; 16] = [
    "Rossi", "Meyer", "Tanaka", "Okafor", "Dubois", "Silva", "Chen", "Haddad", "Novak", "Berg",
    "Iyer", "Garcia", "Martin", "Sato", "Olsen", "Khan",
];
const LIKES: [(&str, &str); 8] = [
    ("room", "high floor, quiet side"),
    ("pillow", "buckwheat pillow"),
    ("amenities", "sparkling water on arrival"),
    ("floor", "near the lift"),
    ("diet", "vegetarian"),
    ("communication", "text message, not calls"),
    ("room", "twin beds"),
    ("amenities", "extra towels"),
];
const AVOID: [(&str, &str, i16); 6] = [
    ("diet", "peanuts", 3),
    ("diet", "shellfish", 3),
    ("room", "rooms facing the street", 2),
    ("amenities", "feather pillows", 3),
    ("communication", "marketing calls", 4),
    ("room", "smoking floors", 2),
];

/// Loads the demo guests unless they are there already.
pub async fn load(pool: &PgPool) -> anyhow::Result<()> {
    let already: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM guests WHERE chain_id = $1)")
            .bind(DEMO_CHAIN)
            .fetch_one(pool)
            .await?;
    if already {
        return Ok(());
    }
    let mut random = DemoRandom::new(0xc0ffee);
    let today = Utc::now().date_naive();
    let policy = TierPolicy::default();
    let mut tx = pool.begin().await?;
    guestloop_kit::demo::claim_demo_properties(&mut tx).await?;
    for chunk in (1..=GUESTS).collect::<Vec<_>>().chunks(500) {
        let mut guests = QueryBuilder::new(
            "INSERT INTO guests (guest_id, chain_id, given_name, family_name, email, phone, email_key, phone_key, language, birthday, tier, created_by, \
             consent_marketing, consent_profiling, consent_sharing, consent_at, consent_source) ",
        );
        let mut stays = Vec::new();
        let mut ledger = Vec::new();
        let mut prefs = Vec::new();
        let mut rows = Vec::new();
        for n in chunk {
            let given = *random.pick(&GIVEN);
            let family = *random.pick(&FAMILY);
            let guest_id = format!("demo-guest-{n:04}");
            let email = format!(
                "{}.{}{}@example.com",
                given.to_lowercase(),
                family.to_lowercase(),
                n
            );
            let phone = format!("+44 7700 9{:05}", n);
            let birthday = chrono::NaiveDate::from_ymd_opt(
                1950 + random.below(50) as i32,
                1 + random.below(12) as u32,
                1 + random.below(28) as u32,
            );
            let stay_count = random.below(7);
            let mut nights_total = 0i64;
            let mut balance = 0i64;
            for s in 0..stay_count {
                let property = random.pick(&DEMO_PROPERTIES);
                let arrival = today - Duration::days(5 + random.below(360) as i64);
                let nights = 1 + random.below(5) as i64;
                let departure = arrival + Duration::days(nights);
                nights_total += nights;
                let reservation = format!("DEMO-{n}-{s}");
                stays.push((
                    property.property_id,
                    reservation.clone(),
                    guest_id.clone(),
                    arrival,
                    departure,
                    property.currency_code,
                    15_000 * nights,
                    String::new(),
                    "checked_out",
                ));
                balance += 100 * nights;
                ledger.push((
                    guest_id.clone(),
                    100 * nights,
                    balance,
                    format!("stay:{}/{reservation}", property.property_id),
                ));
            }
            // Every tenth guest is arriving or in house around the load date, for arrival briefs
            // and care tasks (derived from the number alone, so the random sequence is unchanged).
            let n = *n;
            if n % 10 == 0 {
                let property = &DEMO_PROPERTIES[(n as usize / 10) % DEMO_PROPERTIES.len()];
                let arrival = today + Duration::days((n as i64 / 60) % 3 - 1);
                let nights = 2 + (n as i64 % 3);
                stays.push((
                    property.property_id,
                    format!("DEMO-{n}-NEXT"),
                    guest_id.clone(),
                    arrival,
                    arrival + Duration::days(nights),
                    property.currency_code,
                    0,
                    format!("{}{:02}", 2 + n % 8, 1 + n % 29),
                    if arrival <= today {
                        "in_house"
                    } else {
                        "booked"
                    },
                ));
            }
            let tier = qualified(
                &policy,
                Qualifying {
                    nights: nights_total,
                    stays: stay_count as i64,
                    spend: 0,
                },
            );
            for _ in 0..random.below(3) {
                let (group, value) = *random.pick(&LIKES);
                prefs.push((guest_id.clone(), group, value, 1i16));
            }
            if random.chance(35) {
                let (group, value, polarity) = *random.pick(&AVOID);
                prefs.push((guest_id.clone(), group, value, polarity));
            }
            // Most guests let the chain profile them (customer value and segments); some said
            // no, and their value stays unscored. Derived from the number alone, as above.
            let consent = (n % 3 != 0, n % 8 != 0, n % 5 == 0);
            rows.push((
                guest_id,
                given,
                family,
                email,
                phone,
                birthday,
                tier.as_str(),
                consent,
            ));
        }
        guests.push_values(
            rows,
            |mut b, (id, given, family, email, phone, birthday, tier, consent)| {
                let email_key = crate::domain::identity::email_key(&email);
                let phone_key = crate::domain::identity::phone_key(&phone);
                b.push_bind(id)
                    .push_bind(DEMO_CHAIN)
                    .push_bind(given)
                    .push_bind(family)
                    .push_bind(email)
                    .push_bind(phone)
                    .push_bind(email_key)
                    .push_bind(phone_key)
                    .push_bind("en")
                    .push_bind(birthday)
                    .push_bind(tier)
                    .push_bind("demo")
                    .push_bind(consent.0)
                    .push_bind(consent.1)
                    .push_bind(consent.2)
                    .push_bind(Utc::now())
                    .push_bind("front_desk");
            },
        );
        guests.build().execute(&mut *tx).await?;
        if !stays.is_empty() {
            let mut query = QueryBuilder::new(
                "INSERT INTO stays (property_id, pms_reservation_id, guest_id, arrival_date, departure_date, spend_currency, spend_minor, room, status) ",
            );
            query.push_values(
                stays,
                |mut b,
                 (
                    property,
                    reservation,
                    guest,
                    arrival,
                    departure,
                    currency,
                    spend,
                    room,
                    status,
                )| {
                    b.push_bind(property)
                        .push_bind(reservation)
                        .push_bind(guest)
                        .push_bind(arrival)
                        .push_bind(departure)
                        .push_bind(currency)
                        .push_bind(spend)
                        .push_bind(room)
                        .push_bind(status);
                },
            );
            query.build().execute(&mut *tx).await?;
        }
        if !ledger.is_empty() {
            let mut query = QueryBuilder::new("INSERT INTO ledger (guest_id, kind, points, balance_after, reason, actor, source) ");
            query.push_values(ledger, |mut b, (guest, points, after, source)| {
                b.push_bind(guest)
                    .push_bind("earn")
                    .push_bind(points)
                    .push_bind(after)
                    .push_bind("stay")
                    .push_bind("demo")
                    .push_bind(source);
            });
            query.build().execute(&mut *tx).await?;
            // Each stay that earned records its one posting (see migration 0108).
            sqlx::query(
                "UPDATE stays s SET earned_nights = s.nights, earn_postings = 1 FROM ledger l \
                 WHERE l.source = 'stay:' || s.property_id || '/' || s.pms_reservation_id \
                 AND l.guest_id = s.guest_id AND s.earn_postings = 0",
            )
            .execute(&mut *tx)
            .await?;
        }
        if !prefs.is_empty() {
            let mut query = QueryBuilder::new("INSERT INTO preferences (preference_id, guest_id, grp, value, polarity, source, recorded_by, recorded_at) ");
            query.push_values(prefs, |mut b, (guest, group, value, polarity)| {
                b.push_bind(Uuid::now_v7())
                    .push_bind(guest)
                    .push_bind(group)
                    .push_bind(value)
                    .push_bind(polarity)
                    .push_bind("demo")
                    .push_bind("demo")
                    .push_bind(Utc::now());
            });
            query.build().execute(&mut *tx).await?;
        }
    }
    sqlx::query(
        "INSERT INTO loyalty_accounts (guest_id, balance, lifetime_earned, last_activity_at, chain_id) \
         SELECT g.guest_id, coalesce(sum(l.points), 0), coalesce(sum(l.points), 0), coalesce(max(l.posted_at), now()), $1 \
         FROM guests g LEFT JOIN ledger l ON l.guest_id = g.guest_id WHERE g.chain_id = $1 GROUP BY g.guest_id",
    )
    .bind(DEMO_CHAIN)
    .execute(&mut *tx)
    .await?;
    // Each guest's consent choice starts their consent history, as CreateGuest's would.
    sqlx::query(
        "INSERT INTO consent_history (guest_id, marketing, profiling, sharing, given_at, source, recorded_by) \
         SELECT guest_id, consent_marketing, consent_profiling, consent_sharing, consent_at, consent_source, created_by \
         FROM guests WHERE chain_id = $1 AND consent_at IS NOT NULL ORDER BY guest_id",
    )
    .bind(DEMO_CHAIN)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // Customer values and segments from the start (the scheduled evaluation comes later).
    crate::api::evaluate_customer_values(pool, DEMO_CHAIN, Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("evaluating demo customer values: {e}"))?;
    Ok(())
}
