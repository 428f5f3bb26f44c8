//! The demo chain every service loads with `guestloop up --demo`: six properties in three
//! regions and six time zones, so calendars, roll-ups and scoping are exercised from the first run.

/// One demo property.
#[derive(Debug, Clone, Copy)]
pub struct DemoProperty {
    pub property_id: &'static str,
    pub name: &'static str,
    pub region: &'static str,
    pub time_zone: &'static str,
    pub currency_code: &'static str,
    pub rooms: u32,
}

/// The chain id of the demo data (also the default of `guestloop token --chain`).
pub const DEMO_CHAIN: &str = "demo-chain";

pub const DEMO_PROPERTIES: [DemoProperty; 6] = [
    DemoProperty {
        property_id: "paris-opera",
        name: "Guestloop Paris Opéra",
        region: "emea",
        time_zone: "Europe/Paris",
        currency_code: "EUR",
        rooms: 180,
    },
    DemoProperty {
        property_id: "london-city",
        name: "Guestloop London City",
        region: "emea",
        time_zone: "Europe/London",
        currency_code: "GBP",
        rooms: 220,
    },
    DemoProperty {
        property_id: "new-york-midtown",
        name: "Guestloop New York Midtown",
        region: "americas",
        time_zone: "America/New_York",
        currency_code: "USD",
        rooms: 350,
    },
    DemoProperty {
        property_id: "chicago-loop",
        name: "Guestloop Chicago Loop",
        region: "americas",
        time_zone: "America/Chicago",
        currency_code: "USD",
        rooms: 260,
    },
    DemoProperty {
        property_id: "tokyo-ginza",
        name: "Guestloop Tokyo Ginza",
        region: "apac",
        time_zone: "Asia/Tokyo",
        currency_code: "JPY",
        rooms: 300,
    },
    DemoProperty {
        property_id: "singapore-marina",
        name: "Guestloop Singapore Marina",
        region: "apac",
        time_zone: "Asia/Singapore",
        currency_code: "SGD",
        rooms: 240,
    },
];

/// A small deterministic generator (SplitMix64) so demo data is the same on every machine.
#[derive(Debug, Clone)]
pub struct DemoRandom(u64);

impl DemoRandom {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The demo properties' engineering hours (local time): weekdays 07:00–12:00 and 13:00–19:00,
/// Saturday 09:00–13:00; complaint clocks of the engineering department and facilities' repair
/// clocks use the same week.
pub fn engineering_week() -> Vec<guestloop_proto::common::v1::WorkingDay> {
    use guestloop_proto::common::v1::{WorkingDay, WorkingInterval};
    let interval = |start: &str, end: &str| WorkingInterval {
        start: start.into(),
        end: end.into(),
    };
    let mut week: Vec<WorkingDay> = ["mon", "tue", "wed", "thu", "fri"]
        .into_iter()
        .map(|day| WorkingDay {
            weekday: day.into(),
            intervals: vec![interval("07:00", "12:00"), interval("13:00", "19:00")],
        })
        .collect();
    week.push(WorkingDay {
        weekday: "sat".into(),
        intervals: vec![interval("09:00", "13:00")],
    });
    week
}

/// Holidays of the demo engineering calendar (local dates).
pub const ENGINEERING_HOLIDAYS: [&str; 2] = ["2026-12-25", "2027-01-01"];

/// Registers the demo properties under the demo chain (`kit::tenancy`), in the demo loader's
/// transaction: no other chain's token reaches them.
pub async fn claim_demo_properties(conn: &mut sqlx::PgConnection) -> crate::ApiResult<()> {
    let properties: Vec<&str> = DEMO_PROPERTIES.iter().map(|p| p.property_id).collect();
    crate::tenancy::claim_for_chain(conn, DEMO_CHAIN, &properties).await
}
