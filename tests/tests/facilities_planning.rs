//! Facilities planning end to end: engineering settings (calendar and targets) drive the repair
//! clocks of new work orders; the KPI answer's MTBF per category, maintenance cost per occupied
//! room-night (occupancy from CRM) and daily series agree with the data put in, and with CRM
//! stopped the cost per room-night is left out and named missing; the replacement forecast
//! groups assets by end-of-life year. Bad requests name the field and change nothing.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use guestloop_kit::auth::Role;
use guestloop_kit::time::required_timestamp;
use guestloop_kit::worktime::{CalendarSpec, WorkingCalendar};
use guestloop_proto::common::v1::{Money, TimeRange, WorkingDay, WorkingInterval};
use guestloop_proto::crm::v1 as crm;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use guestloop_proto::facilities::v1 as pb;
use guestloop_proto::facilities::v1::facilities_service_client::FacilitiesServiceClient;
use guestloop_testkit::{spawn_service_on, test_settings, TestService, TokenBuilder};
use tonic::Code;

const PROPERTY: &str = "plan-a";

type Facilities = FacilitiesServiceClient<guestloop_kit::client::AuthedChannel>;

struct Suite {
    crm: TestService,
    facilities: TestService,
}

async fn suite() -> anyhow::Result<Suite> {
    let ports: Vec<u16> = (0..2)
        .map(|_| guestloop_kit::ports::free_port())
        .collect::<Result<_, _>>()?;
    let mut settings = test_settings();
    settings
        .endpoints
        .insert("crm".into(), format!("http://127.0.0.1:{}", ports[0]));
    let crm =
        spawn_service_on(&guestloop_crm::DEFINITION, settings.clone(), None, ports[0]).await?;
    let facilities =
        spawn_service_on(&guestloop_facilities::DEFINITION, settings, None, ports[1]).await?;
    Ok(Suite { crm, facilities })
}

async fn facilities_as(
    service: &TestService,
    role: Role,
    property: &str,
) -> anyhow::Result<Facilities> {
    let token = TokenBuilder::new(role).properties(&[property]).mint()?;
    Ok(FacilitiesServiceClient::new(
        service.channel_with_token(&token).await?,
    ))
}

fn paris_weekdays() -> pb::EngineeringSettings {
    pb::EngineeringSettings {
        property_id: PROPERTY.into(),
        time_zone: "Europe/Paris".into(),
        always_open: false,
        days: ["mon", "tue", "wed", "thu", "fri"]
            .into_iter()
            .map(|d| WorkingDay {
                weekday: d.into(),
                intervals: vec![WorkingInterval {
                    start: "09:00".into(),
                    end: "17:00".into(),
                }],
            })
            .collect(),
        holidays: vec!["2031-12-25".into()],
        targets: vec![pb::RepairTarget {
            priority: pb::Priority::Normal as i32,
            respond_minutes: 60,
            fix_minutes: 240,
            around_the_clock: false,
        }],
        etag: String::new(),
    }
}

async fn work_order(
    client: &mut Facilities,
    request_id: &str,
    priority: pb::Priority,
    asset_id: &str,
) -> anyhow::Result<pb::WorkOrder> {
    Ok(client
        .create_work_order(pb::CreateWorkOrderRequest {
            request_id: request_id.into(),
            work_order: Some(pb::WorkOrder {
                property_id: PROPERTY.into(),
                asset_id: asset_id.into(),
                title: format!("Repair {request_id}"),
                priority: priority as i32,
                source: pb::WorkOrderSource::StaffReport as i32,
                ..Default::default()
            }),
        })
        .await?
        .into_inner())
}

fn time(ts: Option<&prost_types::Timestamp>) -> anyhow::Result<DateTime<Utc>> {
    required_timestamp("timestamp", ts).map_err(|e| anyhow::anyhow!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engineering_settings_drive_repair_clocks() -> anyhow::Result<()> {
    let suite = suite().await?;
    let mut manager = facilities_as(&suite.facilities, Role::GeneralManager, PROPERTY).await?;

    // Nothing stored: around the clock in UTC, the four default targets.
    let defaults = manager
        .get_engineering_settings(pb::GetEngineeringSettingsRequest {
            property_id: PROPERTY.into(),
        })
        .await?
        .into_inner();
    assert!(defaults.always_open);
    assert_eq!(defaults.time_zone, "UTC");
    assert_eq!(defaults.etag, "");
    let minutes: Vec<(i32, i32, bool)> = defaults
        .targets
        .iter()
        .map(|t| (t.respond_minutes, t.fix_minutes, t.around_the_clock))
        .collect();
    assert_eq!(
        minutes,
        [
            (15, 120, true),
            (30, 240, true),
            (24 * 60, 72 * 60, false),
            (72 * 60, 14 * 24 * 60, false)
        ]
    );

    // Bad settings: every field named, nothing stored.
    let mut bad = paris_weekdays();
    bad.time_zone = "Mars/Olympus".into();
    bad.targets.push(pb::RepairTarget {
        priority: pb::Priority::Low as i32,
        respond_minutes: 600,
        fix_minutes: 60,
        around_the_clock: false,
    });
    let refused = manager
        .update_engineering_settings(pb::UpdateEngineeringSettingsRequest {
            settings: Some(bad),
            etag: String::new(),
        })
        .await
        .expect_err("invalid settings");
    assert_eq!(refused.code(), Code::InvalidArgument);
    for field in ["settings.time_zone", "settings.targets[1].respond_minutes"] {
        assert!(
            refused.message().contains(field),
            "{field} in {}",
            refused.message()
        );
    }
    let mut empty_week = paris_weekdays();
    empty_week.days.clear();
    let refused = manager
        .update_engineering_settings(pb::UpdateEngineeringSettingsRequest {
            settings: Some(empty_week),
            etag: String::new(),
        })
        .await
        .expect_err("a calendar without hours");
    assert!(
        refused.message().contains("settings.days"),
        "{}",
        refused.message()
    );
    let still = manager
        .get_engineering_settings(pb::GetEngineeringSettingsRequest {
            property_id: PROPERTY.into(),
        })
        .await?
        .into_inner();
    assert_eq!(still, defaults, "refused updates change nothing");

    // Agents may read but not change; other properties are out of scope.
    let mut agent = facilities_as(&suite.facilities, Role::Agent, PROPERTY).await?;
    assert_eq!(
        agent
            .update_engineering_settings(pb::UpdateEngineeringSettingsRequest {
                settings: Some(paris_weekdays()),
                etag: String::new(),
            })
            .await
            .expect_err("agents do not plan")
            .code(),
        Code::PermissionDenied
    );
    let mut other = facilities_as(&suite.facilities, Role::GeneralManager, "plan-b").await?;
    assert_eq!(
        other
            .get_engineering_settings(pb::GetEngineeringSettingsRequest {
                property_id: PROPERTY.into(),
            })
            .await
            .expect_err("out of scope")
            .code(),
        Code::PermissionDenied
    );

    // Stored, then a stale etag is refused.
    let stored = manager
        .update_engineering_settings(pb::UpdateEngineeringSettingsRequest {
            settings: Some(paris_weekdays()),
            etag: String::new(),
        })
        .await?
        .into_inner();
    assert!(!stored.etag.is_empty());
    assert_eq!(stored.targets.len(), 4);
    assert_eq!(
        (
            stored.targets[2].respond_minutes,
            stored.targets[2].fix_minutes
        ),
        (60, 240)
    );
    let read = manager
        .get_engineering_settings(pb::GetEngineeringSettingsRequest {
            property_id: PROPERTY.into(),
        })
        .await?
        .into_inner();
    assert_eq!(read, stored);
    let stale = manager
        .update_engineering_settings(pb::UpdateEngineeringSettingsRequest {
            settings: Some(paris_weekdays()),
            etag: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .expect_err("stale etag");
    assert_eq!(stale.code(), Code::Aborted);

    // A normal work order is due in engineering hours; a life-safety one two elapsed hours later.
    let calendar = WorkingCalendar::try_from(CalendarSpec::from_wire(
        "Europe/Paris",
        false,
        &paris_weekdays().days,
        &paris_weekdays().holidays,
        0,
    ))?;
    let normal = work_order(&mut manager, "wo-normal", pb::Priority::Normal, "").await?;
    let created = time(normal.create_time.as_ref())?;
    assert_eq!(
        time(normal.respond_due_time.as_ref())?,
        calendar.add_working_time(created, Duration::minutes(60))
    );
    assert_eq!(
        time(normal.fix_due_time.as_ref())?,
        calendar.add_working_time(created, Duration::minutes(240))
    );
    let urgent = work_order(&mut manager, "wo-urgent", pb::Priority::LifeSafety, "").await?;
    let created = time(urgent.create_time.as_ref())?;
    assert_eq!(
        time(urgent.fix_due_time.as_ref())? - created,
        Duration::hours(2)
    );
    assert_eq!(
        time(urgent.respond_due_time.as_ref())? - created,
        Duration::minutes(15)
    );
    // Text the database cannot store (a NUL) is bad input, not a server error, and writes nothing.
    let refused = manager
        .create_work_order(pb::CreateWorkOrderRequest {
            request_id: "wo-nul".into(),
            work_order: Some(pb::WorkOrder {
                property_id: PROPERTY.into(),
                title: "Broken\0lamp".into(),
                priority: pb::Priority::Low as i32,
                source: pb::WorkOrderSource::StaffReport as i32,
                ..Default::default()
            }),
        })
        .await
        .expect_err("a NUL in the title");
    assert_eq!(
        refused.code(),
        Code::InvalidArgument,
        "{}",
        refused.message()
    );
    suite.facilities.shutdown().await?;
    suite.crm.shutdown().await?;
    Ok(())
}

async fn create_asset(
    client: &mut Facilities,
    name: &str,
    category: pb::AssetCategory,
    install_date: &str,
    life: i32,
    cost: i64,
) -> anyhow::Result<pb::Asset> {
    Ok(client
        .create_asset(pb::CreateAssetRequest {
            request_id: format!("asset-{name}"),
            asset: Some(pb::Asset {
                property_id: PROPERTY.into(),
                name: name.into(),
                category: category as i32,
                location: Some(pb::Location {
                    building: "main".into(),
                    floor: "1".into(),
                    room: "101".into(),
                }),
                install_date: install_date.into(),
                expected_life_years: life,
                replacement_cost: (cost > 0).then(|| Money {
                    currency_code: "EUR".into(),
                    minor_units: cost,
                }),
                ..Default::default()
            }),
        })
        .await?
        .into_inner())
}

async fn complete(
    client: &mut Facilities,
    order: &pb::WorkOrder,
    labour: i64,
    parts: i64,
) -> anyhow::Result<()> {
    for action in [pb::WorkOrderAction::Start, pb::WorkOrderAction::Complete] {
        let complete = action == pb::WorkOrderAction::Complete;
        client
            .transition_work_order(pb::TransitionWorkOrderRequest {
                work_order_id: order.work_order_id.clone(),
                action: action as i32,
                labour_cost: complete.then(|| Money {
                    currency_code: "EUR".into(),
                    minor_units: labour,
                }),
                parts_cost: complete.then(|| Money {
                    currency_code: "EUR".into(),
                    minor_units: parts,
                }),
                ..Default::default()
            })
            .await?;
    }
    Ok(())
}

fn period(from: DateTime<Utc>, to: DateTime<Utc>) -> Option<TimeRange> {
    Some(TimeRange {
        start_time: Some(guestloop_kit::time::to_timestamp(from)),
        end_time: Some(guestloop_kit::time::to_timestamp(to)),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kpis_forecast_and_cost_per_occupied_room_night() -> anyhow::Result<()> {
    let suite = suite().await?;
    let mut manager = facilities_as(&suite.facilities, Role::GeneralManager, PROPERTY).await?;
    let year = Utc::now().year();

    // Assets: two air conditioners (one past its life), a lift, and one without an install date.
    let ac_old = create_asset(
        &mut manager,
        "ac-old",
        pb::AssetCategory::Hvac,
        "2010-03-01",
        10,
        300_000,
    )
    .await?;
    let ac_new = create_asset(
        &mut manager,
        "ac-new",
        pb::AssetCategory::Hvac,
        &format!("{}-05-01", year - 8),
        10,
        400_000,
    )
    .await?;
    let lift = create_asset(
        &mut manager,
        "lift",
        pb::AssetCategory::Elevator,
        &format!("{}-01-15", year - 19),
        20,
        5_000_000,
    )
    .await?;
    create_asset(&mut manager, "sofa", pb::AssetCategory::Furniture, "", 0, 0).await?;
    // Hours typed into the years field would put the forecast beyond any date: refused, with
    // the field named, and no asset stored to break the forecast.
    let hours = create_asset(
        &mut manager,
        "boiler",
        pb::AssetCategory::Hvac,
        &format!("{}-01-15", year - 2),
        300_000,
        0,
    )
    .await
    .expect_err("an expected life of 300,000 years");
    let status = hours
        .downcast_ref::<tonic::Status>()
        .ok_or_else(|| anyhow::anyhow!("{hours}"))?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        guestloop_testkit::violated_fields(status),
        vec!["asset.expected_life_years"]
    );

    // Three corrective work orders on the air conditioners, one on the lift; three completed.
    let first = work_order(
        &mut manager,
        "ac-1",
        pb::Priority::GuestImpacting,
        &ac_old.asset_id,
    )
    .await?;
    let second = work_order(&mut manager, "ac-2", pb::Priority::Normal, &ac_new.asset_id).await?;
    work_order(&mut manager, "ac-3", pb::Priority::Low, &ac_new.asset_id).await?;
    let lift_order = work_order(
        &mut manager,
        "lift-1",
        pb::Priority::LifeSafety,
        &lift.asset_id,
    )
    .await?;
    complete(&mut manager, &first, 12_000, 3_000).await?;
    complete(&mut manager, &second, 8_000, 0).await?;
    complete(&mut manager, &lift_order, 50_000, 20_000).await?;

    // Occupancy: 3 + 2 nights inside the period, a cancelled stay and a stay elsewhere ignored.
    let today = Utc::now().date_naive();
    let from = Utc.from_utc_datetime(
        &(today - chrono::Days::new(10))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default(),
    );
    let to = Utc.from_utc_datetime(
        &(today + chrono::Days::new(1))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default(),
    );
    let admin = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let mut crm_client = CrmServiceClient::new(suite.crm.channel_with_token(&admin).await?);
    let date = |days_back: u64| {
        (today - chrono::Days::new(days_back))
            .format("%Y-%m-%d")
            .to_string()
    };
    let stay =
        |id: &str, property: &str, arrival: String, departure: String, status: crm::StayStatus| {
            crm::Stay {
                property_id: property.into(),
                pms_reservation_id: id.into(),
                guest_id: format!("guest-{id}"),
                arrival_date: arrival,
                departure_date: departure,
                room: "101".into(),
                status: status as i32,
                ..Default::default()
            }
        };
    crm_client
        .upsert_stays(crm::UpsertStaysRequest {
            stays: vec![
                stay(
                    "R1",
                    PROPERTY,
                    date(5),
                    date(2),
                    crm::StayStatus::CheckedOut,
                ),
                // Arrived 12 days ago, leaving 8 days ago: 2 of its 4 nights are in the period.
                stay(
                    "R2",
                    PROPERTY,
                    date(12),
                    date(8),
                    crm::StayStatus::CheckedOut,
                ),
                stay("R3", PROPERTY, date(4), date(1), crm::StayStatus::Cancelled),
                stay(
                    "R4",
                    "plan-b",
                    date(4),
                    date(1),
                    crm::StayStatus::CheckedOut,
                ),
            ],
        })
        .await?;

    let asked = Utc::now();
    let kpis = manager
        .get_facilities_kpis(pb::GetFacilitiesKpisRequest {
            property_ids: vec![PROPERTY.into()],
            period: period(from, to),
            daily: true,
            time_zone: "Europe/Paris".into(),
            skip_occupancy: false,
        })
        .await?
        .into_inner();
    assert_eq!(kpis.work_orders, 4);
    assert_eq!(kpis.work_orders_done, 3);
    assert!(kpis.missing.is_empty(), "{:?}", kpis.missing);
    assert_eq!(kpis.occupied_room_nights, Some(5));
    assert_eq!(
        kpis.maintenance_cost,
        [Money {
            currency_code: "EUR".into(),
            minor_units: 12_000 + 3_000 + 8_000 + 50_000 + 20_000
        }]
    );
    assert_eq!(kpis.cost_per_occupied_room_night.len(), 1);
    assert!((kpis.cost_per_occupied_room_night[0].minor_units - 93_000.0 / 5.0).abs() < 1e-9);

    let answered = Utc::now();
    // MTBF: installed hours in the period so far (up to now, not to its end tomorrow) over
    // corrective work orders, per category.
    let hours_until = |at: chrono::DateTime<Utc>| (at - from).num_seconds() as f64 / 3600.0;
    let (fewest, most) = (
        (2.0 * hours_until(asked)).floor() as i64,
        (2.0 * hours_until(answered)).ceil() as i64,
    );
    let hvac = kpis
        .by_category
        .iter()
        .find(|c| c.category == pb::AssetCategory::Hvac as i32)
        .ok_or_else(|| anyhow::anyhow!("no HVAC line"))?;
    assert_eq!((hvac.assets, hvac.failures, hvac.repairs_done), (2, 3, 2));
    assert!(
        (fewest..=most).contains(&hvac.asset_hours),
        "{} hours, not {fewest}..={most}",
        hvac.asset_hours
    );
    assert!(hvac.asset_hours < 2 * (to - from).num_hours());
    assert_eq!(hvac.mtbf_hours, Some(hvac.asset_hours as f64 / 3.0));
    let lift_line = kpis
        .by_category
        .iter()
        .find(|c| c.category == pb::AssetCategory::Elevator as i32)
        .ok_or_else(|| anyhow::anyhow!("no elevator line"))?;
    assert_eq!((lift_line.assets, lift_line.failures), (1, 1));
    assert!(lift_line.mttr_hours.is_some());
    // The sofa has no install date: it is in service for the whole period, without failures.
    let furniture = kpis
        .by_category
        .iter()
        .find(|c| c.category == pb::AssetCategory::Furniture as i32)
        .ok_or_else(|| anyhow::anyhow!("no furniture line"))?;
    assert_eq!((furniture.failures, furniture.mtbf_hours), (0, None));

    // The daily series covers every local date and adds up to the totals.
    assert!(kpis.days.len() >= 11, "{} days", kpis.days.len());
    assert_eq!(
        kpis.days.iter().map(|d| d.work_orders).sum::<i64>(),
        kpis.work_orders
    );
    assert_eq!(
        kpis.days.iter().map(|d| d.work_orders_done).sum::<i64>(),
        kpis.work_orders_done
    );
    assert_eq!(
        kpis.days.iter().map(|d| d.repair_seconds_sum).sum::<i64>(),
        kpis.repair_seconds_sum
    );
    assert_eq!(
        kpis.days.iter().map(|d| d.room_nights_lost).sum::<i64>(),
        kpis.room_nights_lost
    );
    let mut dates: Vec<&str> = kpis.days.iter().map(|d| d.date.as_str()).collect();
    dates.dedup();
    assert_eq!(dates.len(), kpis.days.len(), "one entry per date");

    // Bad requests name the field.
    for (request, field) in [
        (
            pb::GetFacilitiesKpisRequest {
                property_ids: vec![PROPERTY.into()],
                period: period(from, to),
                time_zone: "Nowhere/City".into(),
                ..Default::default()
            },
            "time_zone",
        ),
        (
            pb::GetFacilitiesKpisRequest {
                property_ids: vec![PROPERTY.into()],
                period: period(from - Duration::days(400), to),
                daily: true,
                ..Default::default()
            },
            "period",
        ),
        (
            pb::GetFacilitiesKpisRequest {
                property_ids: vec![PROPERTY.into()],
                ..Default::default()
            },
            "period",
        ),
    ] {
        let refused = manager.get_facilities_kpis(request).await.expect_err(field);
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains(field), "{}", refused.message());
    }

    // The replacement forecast.
    let forecast = manager
        .get_replacement_forecast(pb::GetReplacementForecastRequest {
            property_ids: vec![PROPERTY.into()],
            from_year: year,
            years: 5,
        })
        .await?
        .into_inner();
    let lines: Vec<(i32, i32, i64)> = forecast
        .lines
        .iter()
        .map(|l| (l.year, l.category, l.assets))
        .collect();
    assert_eq!(
        lines,
        [
            (year + 1, pb::AssetCategory::Elevator as i32, 1),
            (year + 2, pb::AssetCategory::Hvac as i32, 1)
        ]
    );
    assert_eq!(forecast.overdue.len(), 1);
    assert_eq!(forecast.overdue[0].category, pb::AssetCategory::Hvac as i32);
    assert_eq!(forecast.unknown_life_assets, 1);
    assert_eq!(
        forecast.total_cost,
        [Money {
            currency_code: "EUR".into(),
            minor_units: 300_000 + 400_000 + 5_000_000
        }]
    );
    let short = manager
        .get_replacement_forecast(pb::GetReplacementForecastRequest {
            property_ids: vec![PROPERTY.into()],
            from_year: year,
            years: 1,
        })
        .await?
        .into_inner();
    assert!(short.lines.is_empty(), "nothing ends its life this year");
    for (request, field) in [
        (
            pb::GetReplacementForecastRequest {
                property_ids: vec![PROPERTY.into()],
                years: 31,
                ..Default::default()
            },
            "years",
        ),
        (
            pb::GetReplacementForecastRequest {
                property_ids: vec![PROPERTY.into()],
                from_year: 12,
                ..Default::default()
            },
            "from_year",
        ),
        (pb::GetReplacementForecastRequest::default(), "property_ids"),
    ] {
        let refused = manager
            .get_replacement_forecast(request)
            .await
            .expect_err(field);
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains(field), "{}", refused.message());
    }
    let mut agent = facilities_as(&suite.facilities, Role::Agent, PROPERTY).await?;
    assert_eq!(
        agent
            .get_replacement_forecast(pb::GetReplacementForecastRequest {
                property_ids: vec![PROPERTY.into()],
                ..Default::default()
            })
            .await
            .expect_err("planners only")
            .code(),
        Code::PermissionDenied
    );

    // With CRM stopped the cost per room-night is left out and named missing; the rest answers.
    suite.crm.shutdown().await?;
    let without_crm = manager
        .get_facilities_kpis(pb::GetFacilitiesKpisRequest {
            property_ids: vec![PROPERTY.into()],
            period: period(from, to),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(without_crm.missing, ["crm"]);
    assert_eq!(without_crm.occupied_room_nights, None);
    assert!(without_crm.cost_per_occupied_room_night.is_empty());
    assert_eq!(without_crm.maintenance_cost, kpis.maintenance_cost);
    assert_eq!(without_crm.work_orders, 4);
    let skipped = manager
        .get_facilities_kpis(pb::GetFacilitiesKpisRequest {
            property_ids: vec![PROPERTY.into()],
            period: period(from, to),
            skip_occupancy: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(skipped.missing.is_empty());
    suite.facilities.shutdown().await?;
    Ok(())
}
