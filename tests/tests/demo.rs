//! `--demo` loads a realistic chain once: six properties in three regions and time zones,
//! 90 days of complaints, 3,000 guests with stays, likes, dislikes and ledgers.

use guestloop_kit::auth::Role;
use guestloop_proto::crm::v1 as pb;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use guestloop_testkit::{spawn_service_with, test_settings, TokenBuilder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_loads_once_and_hangs_together() -> anyhow::Result<()> {
    let mut settings = test_settings();
    settings.demo = true;
    let complaints =
        spawn_service_with(&guestloop_complaints::DEFINITION, settings.clone(), None).await?;
    let crm = spawn_service_with(&guestloop_crm::DEFINITION, settings.clone(), None).await?;
    let complaints_pool = complaints.database.admin_pool().await?;
    let crm_pool = crm.database.admin_pool().await?;

    let (count, properties, zones): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT property_id), (SELECT count(DISTINCT settings) FROM complaints.property_settings) \
         FROM complaints.complaints",
    )
    .fetch_one(&complaints_pool)
    .await?;
    assert!(count > 2_000, "90 days across the chain: {count}");
    assert_eq!((properties, zones), (6, 6));
    let span: f64 = sqlx::query_scalar("SELECT extract(epoch FROM max(created_at) - min(created_at))::float8 / 86400 FROM complaints.complaints")
        .fetch_one(&complaints_pool)
        .await?;
    assert!(span > 85.0, "about 90 days: {span}");
    let guests: i64 = sqlx::query_scalar("SELECT count(*) FROM crm.guests")
        .fetch_one(&crm_pool)
        .await?;
    assert_eq!(guests, 3_000);
    let dislikes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.preferences WHERE polarity <> 1")
            .fetch_one(&crm_pool)
            .await?;
    assert!(dislikes > 500);
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.loyalty_accounts a WHERE a.balance <> (SELECT coalesce(sum(points), 0) FROM crm.ledger l WHERE l.guest_id = a.guest_id)",
    )
    .fetch_one(&crm_pool)
    .await?;
    assert_eq!(unbalanced, 0);
    // Customer values are evaluated at load: every guest who consented to profiling has a
    // segment, not all the same one; the others have none.
    let (unsegmented, wrongly, segments): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE value_segment = '' AND consent_profiling), \
                count(*) FILTER (WHERE value_segment <> '' AND NOT consent_profiling), \
                count(DISTINCT value_segment) FILTER (WHERE consent_profiling) FROM crm.guests",
    )
    .fetch_one(&crm_pool)
    .await?;
    assert_eq!((unsegmented, wrongly), (0, 0));
    assert!(segments >= 2, "{segments} segments");
    // Each guest's consent choice is the first entry of their consent history.
    let (chose, histories): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM crm.guests WHERE consent_at IS NOT NULL), \
                (SELECT count(DISTINCT guest_id) FROM crm.consent_history)",
    )
    .fetch_one(&crm_pool)
    .await?;
    assert!(chose > 0);
    assert_eq!(histories, chose);

    // Complaint guests are CRM guests.
    let complaint_guest: String = sqlx::query_scalar(
        "SELECT guest_id FROM complaints.complaints WHERE guest_id <> '' LIMIT 1",
    )
    .fetch_one(&complaints_pool)
    .await?;
    let token = TokenBuilder::new(Role::ChainAdmin)
        .chain("demo-chain")
        .mint()?;
    let mut client = CrmServiceClient::new(crm.channel_with_token(&token).await?);
    let tier = client
        .get_guest_tier(pb::GetGuestTierRequest {
            guest_id: complaint_guest,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(!tier.tier.is_empty());

    // Loading again changes nothing.
    let settings = test_settings();
    let options = guestloop_kit::db::connect_options(
        &complaints.database.url,
        "complaints",
        &settings.database,
    )?;
    guestloop_complaints::demo::load(&guestloop_kit::db::pool(options, &settings.database)).await?;
    let options = guestloop_kit::db::connect_options(&crm.database.url, "crm", &settings.database)?;
    guestloop_crm::demo::load(&guestloop_kit::db::pool(options, &settings.database)).await?;
    let again: i64 = sqlx::query_scalar("SELECT count(*) FROM complaints.complaints")
        .fetch_one(&complaints_pool)
        .await?;
    assert_eq!(again, count);
    let guests_again: i64 = sqlx::query_scalar("SELECT count(*) FROM crm.guests")
        .fetch_one(&crm_pool)
        .await?;
    assert_eq!(guests_again, 3_000);
    // Facilities and audits of the same chain.
    let facilities = spawn_service_with(
        &guestloop_facilities::DEFINITION,
        {
            let mut s = test_settings();
            s.demo = true;
            s
        },
        None,
    )
    .await?;
    let audit = spawn_service_with(
        &guestloop_audit::DEFINITION,
        {
            let mut s = test_settings();
            s.demo = true;
            s
        },
        None,
    )
    .await?;
    let facilities_pool = facilities.database.admin_pool().await?;
    let (assets, inspections, orders): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM facilities.assets), (SELECT count(*) FROM facilities.inspections), (SELECT count(*) FROM facilities.work_orders)",
    )
    .fetch_one(&facilities_pool)
    .await?;
    assert_eq!(assets, 6 * 20 * 5);
    assert_eq!(inspections, 6 * 13, "weekly room inspections over 90 days");
    assert!(orders >= 6 * 40);
    let audit_pool = audit.database.admin_pool().await?;
    let (standards, audits, findings): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM audit.standards), (SELECT count(*) FROM audit.audits WHERE status = 'submitted'), (SELECT count(*) FROM audit.findings)",
    )
    .fetch_one(&audit_pool)
    .await?;
    assert_eq!(standards, 7);
    assert!(audits >= 6 * 22, "a year of audits: {audits}");
    assert!(findings > 0);
    audit.shutdown().await?;
    facilities.shutdown().await?;
    crm.shutdown().await?;
    complaints.shutdown().await
}
