//! The gateway's scorecard on the demo chain: every property's composite score equals the one
//! computed here straight from the complaints data, roll-ups come from summed counts, and with a
//! backend stopped the scorecard still answers and names what is missing (CRM's loyalty summary,
//! reused for the configured age, only for periods it was not asked about within that age).

use std::collections::BTreeMap;

use guestloop_gateway::sqs::{default_weights, score, Counts};
use guestloop_kit::auth::Role;
use guestloop_kit::demo::DEMO_CHAIN;
use guestloop_proto::common::v1::TimeRange;
use guestloop_proto::gateway::v1 as pb;
use guestloop_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use guestloop_testkit::{spawn_service_on, test_settings, TokenBuilder};

/// property, complaints, rated, csat sum, met, missed, resolved, first contact, NPS answers, promoters, detractors, repeats
type PropertySums = (
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);

/// Complaint sums per property from the complaints data for [from, to) (Unix seconds), by the
/// days the complaints service counts: from the start's day to the end's, the end's day only
/// when the end is past its midnight.
async fn complaint_sums(
    pool: &sqlx::PgPool,
    from: i64,
    to: i64,
) -> anyhow::Result<Vec<PropertySums>> {
    let mut rows: Vec<PropertySums> = sqlx::query_as("SELECT property_id, sum(complaints)::bigint, sum(rated)::bigint, sum(csat_sum)::bigint, \
            sum(met_acknowledge + met_investigation + met_remedy_plan + met_answer + met_resolution)::bigint, \
            sum(missed_acknowledge + missed_investigation + missed_remedy_plan + missed_answer + missed_resolution)::bigint, \
            sum(resolved)::bigint, sum(resolved_first_contact)::bigint, sum(nps_answers)::bigint, sum(nps_promoters)::bigint, \
            sum(nps_detractors)::bigint, sum(repeat_issues)::bigint \
     FROM complaints.complaint_kpi_facts WHERE day >= (to_timestamp($1) AT TIME ZONE 'UTC')::date \
       AND day < (to_timestamp($2) AT TIME ZONE 'UTC')::date + CASE WHEN (to_timestamp($2) AT TIME ZONE 'UTC')::time > '00:00' THEN 1 ELSE 0 END \
     GROUP BY property_id",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.sort();
    Ok(rows)
}

/// Per-property counts for [from, to) from the three services' own data: complaint sums, work
/// orders done (and on time) from facilities, audits and their scores from audit.
async fn expected_counts(
    complaints: Vec<PropertySums>,
    facilities_pool: &sqlx::PgPool,
    audit_pool: &sqlx::PgPool,
    from: i64,
    to: i64,
) -> anyhow::Result<BTreeMap<String, Counts>> {
    let orders: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT property_id, count(*) FILTER (WHERE done_at IS NOT NULL), count(*) FILTER (WHERE done_at <= fix_due_at) \
         FROM facilities.work_orders WHERE created_at >= to_timestamp($1) AND created_at < to_timestamp($2) GROUP BY property_id",
    )
    .bind(from)
    .bind(to)
    .fetch_all(facilities_pool)
    .await?;
    let audits: Vec<(String, i64, f64)> = sqlx::query_as(
        "SELECT property_id, count(*), coalesce(sum(overall), 0)::float8 FROM audit.audits \
         WHERE submitted_at >= to_timestamp($1) AND submitted_at < to_timestamp($2) GROUP BY property_id",
    )
    .bind(from)
    .bind(to)
    .fetch_all(audit_pool)
    .await?;
    let mut expected: BTreeMap<String, Counts> = BTreeMap::new();
    for (
        property,
        complaints,
        rated,
        csat_sum,
        met,
        missed,
        resolved,
        fcr,
        answers,
        promoters,
        detractors,
        repeats,
    ) in complaints
    {
        let mut counts = Counts {
            complaints,
            rated,
            csat_sum,
            clocks_met: met,
            clocks_decided: met + missed,
            resolved,
            resolved_first_contact: fcr,
            nps_answers: answers,
            nps_promoters: promoters,
            nps_detractors: detractors,
            repeat_issues: repeats,
            ..Counts::default()
        };
        if let Some((_, done, on_time)) = orders.iter().find(|(p, _, _)| *p == property) {
            counts.work_orders_done = *done;
            counts.work_orders_on_time = *on_time;
        }
        if let Some((_, count, sum)) = audits.iter().find(|(p, _, _)| *p == property) {
            counts.audits = *count;
            counts.audit_score_sum = *sum;
        }
        expected.insert(property, counts);
    }
    Ok(expected)
}

/// CRM's own KPIs for the properties of `units` over `period`, asked directly.
async fn crm_figures(
    crm: &guestloop_testkit::TestService,
    token: &str,
    units: &[pb::ScoredUnit],
    period: TimeRange,
) -> anyhow::Result<guestloop_proto::crm::v1::CrmKpis> {
    Ok(
        guestloop_proto::crm::v1::crm_service_client::CrmServiceClient::new(
            crm.channel_with_token(token).await?,
        )
        .get_crm_kpis(guestloop_proto::crm::v1::GetCrmKpisRequest {
            property_ids: units.iter().map(|p| p.key.clone()).collect(),
            period: Some(period),
            loyalty_only: false,
        })
        .await?
        .into_inner(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scorecard_matches_the_data_and_survives_a_missing_backend() -> anyhow::Result<()> {
    let ports: Vec<u16> = (0..5)
        .map(|_| guestloop_kit::ports::free_port())
        .collect::<Result<_, _>>()?;
    let mut settings = test_settings();
    settings.demo = true;
    // Long enough that the loyalty summary outlives the test however slow the machine.
    settings.scorecard.loyalty_max_age_seconds = 3_600;
    settings.endpoints.insert(
        "complaints".into(),
        format!("http://127.0.0.1:{}", ports[0]),
    );
    settings.endpoints.insert(
        "facilities".into(),
        format!("http://127.0.0.1:{}", ports[1]),
    );
    settings
        .endpoints
        .insert("crm".into(), format!("http://127.0.0.1:{}", ports[4]));
    settings
        .endpoints
        .insert("audit".into(), format!("http://127.0.0.1:{}", ports[3]));
    let crm =
        spawn_service_on(&guestloop_crm::DEFINITION, settings.clone(), None, ports[4]).await?;
    let complaints = spawn_service_on(
        &guestloop_complaints::DEFINITION,
        settings.clone(),
        None,
        ports[0],
    )
    .await?;
    let facilities = spawn_service_on(
        &guestloop_facilities::DEFINITION,
        settings.clone(),
        None,
        ports[1],
    )
    .await?;
    let audit = spawn_service_on(
        &guestloop_audit::DEFINITION,
        settings.clone(),
        None,
        ports[3],
    )
    .await?;
    let gateway =
        spawn_service_on(&guestloop_gateway::DEFINITION, settings, None, ports[2]).await?;

    // Let the escalation watcher and the KPI rollup settle on the freshly loaded demo data.
    let pool = complaints.database.admin_pool().await?;
    for _ in 0..200 {
        let busy: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM complaints.kpi_dirty) + (SELECT count(*) FROM complaints.complaints WHERE next_escalation_at <= now())",
        )
        .fetch_one(&pool)
        .await?;
        if busy == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let token = TokenBuilder::new(Role::ChainQualityManager)
        .chain("demo-chain")
        .mint()?;
    let mut client = GatewayServiceClient::new(gateway.channel_with_token(&token).await?);
    let now = chrono::Utc::now().timestamp();
    let period = TimeRange {
        start_time: Some(prost_types::Timestamp {
            seconds: now - 60 * 86_400,
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        }),
    };
    // Compare only when the data did not move while the scorecard was computed (the demo's
    // open complaints keep escalating in the background).
    let raw_sums = || complaint_sums(&pool, now - 60 * 86_400, now);
    let mut card = pb::Scorecard::default();
    let mut rows = Vec::new();
    for _ in 0..30 {
        let before = raw_sums().await?;
        card = client
            .get_scorecard(pb::GetScorecardRequest {
                property_ids: vec![],
                region: String::new(),
                period: Some(period),
                ..Default::default()
            })
            .await?
            .into_inner();
        let after = raw_sums().await?;
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM complaints.kpi_dirty")
            .fetch_one(&pool)
            .await?;
        if before == after && pending == 0 {
            rows = after;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(card.missing.is_empty(), "{:?}", card.missing);
    // Every part covers the requested period widened to whole UTC days.
    let (from, to) = {
        let (start, end) = guestloop_kit::time::whole_utc_days((
            chrono::DateTime::from_timestamp(now - 60 * 86_400, 0).unwrap_or_default(),
            chrono::DateTime::from_timestamp(now, 0).unwrap_or_default(),
        ));
        (start.timestamp(), end.timestamp())
    };
    let widened = TimeRange {
        start_time: Some(prost_types::Timestamp {
            seconds: from,
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: to,
            nanos: 0,
        }),
    };
    assert_eq!(card.period, Some(widened));
    // CRM's loyalty figures for the same properties and period, asked directly.
    let direct = crm_figures(&crm, &token, &card.properties, widened).await?;
    let loyalty = card.loyalty.unwrap_or_default();
    assert!(
        direct.members > 0,
        "the demo guests stayed at the demo properties"
    );
    // (Recovery groups move while CRM consumes the complaints feed; stays do not.)
    assert_eq!(
        (
            loyalty.members,
            loyalty.staying_guests,
            loyalty.repeat_guests
        ),
        (direct.members, direct.staying_guests, direct.repeat_guests)
    );
    // The summary says when CRM computed it and for which period (the card's: every request
    // here asks for the same bounds).
    assert_eq!(loyalty.period, Some(widened));
    let as_of = loyalty.as_of.map_or(0, |t| t.seconds);
    assert!(
        (now..=chrono::Utc::now().timestamp()).contains(&as_of),
        "as_of {as_of} within the test"
    );
    assert_eq!(card.properties.len(), 6);
    assert_eq!(card.regions.len(), 3);
    assert_eq!(
        card.properties.iter().map(|p| p.rank).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert!(
        card.properties.windows(2).all(|w| w[0].sqs >= w[1].sqs),
        "league table, best first"
    );

    // And the work orders and audits behind the facilities and audit components.
    let facilities_pool = facilities.database.admin_pool().await?;
    let audit_pool = audit.database.admin_pool().await?;
    let recent_audits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.audits WHERE submitted_at >= to_timestamp($1)",
    )
    .bind(now - 60 * 86_400)
    .fetch_one(&audit_pool)
    .await?;
    assert!(recent_audits > 0, "the demo chain has recent audits");
    let expected = expected_counts(rows, &facilities_pool, &audit_pool, from, to).await?;
    let mut chain = Counts::default();
    for counts in expected.values() {
        chain.add(counts);
    }
    for unit in &card.properties {
        let counts = expected.get(&unit.key).copied().unwrap_or_default();
        let (sqs, _) = score(&counts, &default_weights(), &[]);
        assert_eq!(unit.complaints, counts.complaints, "{}", unit.key);
        let (got, want) = (unit.sqs.unwrap_or(f64::NAN), sqs.unwrap_or(f64::NAN));
        assert!((got - want).abs() < 1e-9, "{}: {got} vs {want}", unit.key);
        let explained: f64 = unit.components.iter().filter_map(|c| c.contribution).sum();
        assert!(
            (explained - got).abs() < 1e-9,
            "every score is the sum of its explained parts"
        );
    }
    let scope = card.scope.clone().unwrap_or_default();
    let (chain_sqs, _) = score(&chain, &default_weights(), &[]);
    assert!(
        (scope.sqs.unwrap_or(f64::NAN) - chain_sqs.unwrap_or(f64::NAN)).abs() < 1e-9,
        "the chain is scored from summed counts"
    );
    assert_eq!(scope.complaints, chain.complaints);
    // The scope's complaint KPIs are the complaints service's own for the chain, computed from the
    // properties' summed counts (retried while the demo's open complaints still move).
    let mut complaints_client =
        guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient::new(
            complaints.channel_with_token(&token).await?,
        );
    let mut matched = None;
    for _ in 0..20 {
        let direct = complaints_client
            .get_complaint_kpis(guestloop_proto::complaints::v1::GetComplaintKpisRequest {
                property_ids: vec![],
                period: Some(period),
                daily_series: false,
                totals_only: true,
            })
            .await?
            .into_inner()
            .values
            .unwrap_or_default();
        let scope_now = client
            .get_scorecard(pb::GetScorecardRequest {
                period: Some(period),
                ..Default::default()
            })
            .await?
            .into_inner()
            .scope
            .and_then(|s| s.kpis)
            .unwrap_or_default();
        if direct == scope_now {
            matched = Some(scope_now);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let kpis = matched.ok_or_else(|| anyhow::anyhow!("scope KPIs never matched complaints'"))?;
    assert!(kpis.first_response_mean_seconds.is_some() && kpis.escalation_rate.is_some());
    // The previous period (as long, ending where the card's starts, so no day is in both) is
    // scored from the same three sources, so the change between the two is a change in the data.
    let previous = expected_counts(
        complaint_sums(&pool, from - (to - from), from).await?,
        &facilities_pool,
        &audit_pool,
        from - (to - from),
        from,
    )
    .await?;
    let mut previous_chain = Counts::default();
    for counts in previous.values() {
        previous_chain.add(counts);
    }
    assert!(
        previous_chain.audits > 0 || previous_chain.work_orders_done > 0,
        "the demo chain has audits or work orders in the previous period"
    );
    let (previous_sqs, _) = score(&previous_chain, &default_weights(), &[]);
    assert!(
        (scope.previous_sqs.unwrap_or(f64::NAN) - previous_sqs.unwrap_or(f64::NAN)).abs() < 1e-9,
        "previous period: {:?} vs {previous_sqs:?}",
        scope.previous_sqs
    );
    let emea = client
        .get_scorecard(pb::GetScorecardRequest {
            property_ids: vec![],
            region: "emea".into(),
            period: Some(period),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(emea.properties.len(), 2);
    // A period without data scores nobody, and ranks nobody.
    let long_ago = client
        .get_scorecard(pb::GetScorecardRequest {
            period: Some(TimeRange {
                start_time: Some(prost_types::Timestamp {
                    seconds: now - 3650 * 86_400,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: now - 3649 * 86_400,
                    nanos: 0,
                }),
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(!long_ago.properties.is_empty());
    assert!(
        long_ago
            .properties
            .iter()
            .all(|p| p.sqs.is_none() && p.rank == 0),
        "{:?}",
        long_ago
            .properties
            .iter()
            .map(|p| (&p.key, p.sqs, p.rank))
            .collect::<Vec<_>>()
    );
    // A supervisor of one property gets the same audit part of its score as the chain's quality
    // manager: the gateway reads the audit aggregates itself once the scope is checked.
    let audited = card
        .properties
        .iter()
        .find(|p| {
            p.components
                .iter()
                .any(|c| c.kpi == "audit_score" && c.value.is_some())
        })
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no property with an audit score"))?;
    let supervisor = TokenBuilder::new(Role::Supervisor)
        .chain("demo-chain")
        .properties(&[audited.key.as_str()])
        .mint()?;
    let own = GatewayServiceClient::new(gateway.channel_with_token(&supervisor).await?)
        .get_scorecard(pb::GetScorecardRequest {
            period: Some(period),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(
        !own.missing.iter().any(|m| m.starts_with("audit")),
        "{:?}",
        own.missing
    );
    let audit_part = |unit: &pb::ScoredUnit| {
        unit.components
            .iter()
            .find(|c| c.kpi == "audit_score")
            .and_then(|c| c.value)
    };
    assert_eq!(
        own.properties
            .iter()
            .map(|p| p.key.clone())
            .collect::<Vec<_>>(),
        vec![audited.key.clone()]
    );
    assert_eq!(audit_part(&own.properties[0]), audit_part(&audited));
    // The region's loyalty figures are CRM's for the region's properties, not the chain's.
    let emea_direct = crm_figures(&crm, &token, &emea.properties, widened).await?;
    let emea_loyalty = emea.loyalty.unwrap_or_default();
    assert_eq!(
        (emea_loyalty.members, emea_loyalty.staying_guests),
        (emea_direct.members, emea_direct.staying_guests)
    );
    assert!(
        emea_loyalty.members < loyalty.members,
        "{} members in the region, {} in the chain",
        emea_loyalty.members,
        loyalty.members
    );

    // With a granularity the scorecard carries the scope's trend: buckets tile the period and
    // their complaints add up to the scope's.
    let with_trend = client
        .get_scorecard(pb::GetScorecardRequest {
            period: Some(period),
            granularity: pb::Granularity::Week as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(!with_trend.trend.is_empty());
    // Each point names the days its figures cover (its bucket widened to whole UTC days), so
    // together they cover the card's own widened period.
    let card_period = with_trend.period.unwrap_or_default();
    assert_eq!(
        with_trend
            .trend
            .first()
            .and_then(|p| p.bucket.and_then(|b| b.start_time)),
        card_period.start_time
    );
    assert_eq!(
        with_trend
            .trend
            .last()
            .and_then(|p| p.bucket.and_then(|b| b.end_time)),
        card_period.end_time
    );
    assert!(with_trend.trend.windows(2).all(|w| {
        w[0].bucket.and_then(|b| b.end_time) == w[1].bucket.and_then(|b| b.start_time)
    }));
    let scope_complaints = with_trend.scope.as_ref().map_or(0, |s| s.complaints);
    assert_eq!(
        with_trend.trend.iter().map(|p| p.complaints).sum::<i64>(),
        scope_complaints
    );
    // Each bucket carries its complaint KPIs: a rate wherever there were complaints, none where
    // there were none.
    for point in &with_trend.trend {
        let escalation = point.kpis.and_then(|k| k.escalation_rate);
        if point.complaints > 0 {
            assert!(
                escalation.is_some_and(|r| (0.0..=1.0).contains(&r)),
                "{point:?}"
            );
        } else {
            assert_eq!(escalation, None, "{point:?}");
        }
    }
    assert!(with_trend.trend.iter().any(|p| p.complaints > 0));
    let refused = client
        .get_scorecard(pb::GetScorecardRequest {
            period: Some(period),
            granularity: 42,
            ..Default::default()
        })
        .await
        .expect_err("unknown granularity");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // A period complaints refuses is refused, with its field named, not answered as an empty card.
    let at = |seconds: i64| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let too_long = client
        .get_scorecard(pb::GetScorecardRequest {
            period: Some(TimeRange {
                start_time: at(now - 1_200 * 86_400),
                end_time: at(now),
            }),
            ..Default::default()
        })
        .await
        .expect_err("a period of 1,200 days");
    assert_eq!(too_long.code(), tonic::Code::InvalidArgument);
    assert!(
        too_long.message().contains("period"),
        "{}",
        too_long.message()
    );

    // A whole-chain token of another chain cannot name this chain's property.
    let stranger = TokenBuilder::new(Role::ChainQualityManager)
        .chain("another-chain")
        .mint()?;
    let refused = GatewayServiceClient::new(gateway.channel_with_token(&stranger).await?)
        .get_scorecard(pb::GetScorecardRequest {
            property_ids: vec![card.properties[0].key.clone()],
            period: Some(period),
            ..Default::default()
        })
        .await
        .expect_err("another chain's property");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    // Nor a property of this chain that only audit knows (its first audit program, no
    // complaint yet): the gateway reads audit with its own token, and says on whose behalf.
    sqlx::query(
        "INSERT INTO audit.property_chains (property_id, chain_id) VALUES ('audited-only', $1)",
    )
    .bind(DEMO_CHAIN)
    .execute(&audit_pool)
    .await?;
    let refused = GatewayServiceClient::new(gateway.channel_with_token(&stranger).await?)
        .get_scorecard(pb::GetScorecardRequest {
            property_ids: vec!["audited-only".into()],
            period: Some(period),
            ..Default::default()
        })
        .await
        .expect_err("another chain's property known to audit only");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("another chain"), "{refused:?}");

    // A property asked for by name stays on the card in a period without any complaint there.
    let quiet_property = card.properties[0].key.clone();
    let quiet = client
        .get_scorecard(pb::GetScorecardRequest {
            property_ids: vec![quiet_property.clone()],
            period: Some(TimeRange {
                start_time: at(now - 4_000 * 86_400),
                end_time: at(now - 3_990 * 86_400),
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        quiet
            .properties
            .iter()
            .map(|p| (p.key.clone(), p.complaints))
            .collect::<Vec<_>>(),
        vec![(quiet_property, 0)]
    );
    assert!(quiet.missing.is_empty(), "{:?}", quiet.missing);

    // With facilities, audit and CRM down the scorecard still answers, and says what is missing.
    let (facilities_database, facilities_settings) = facilities.stop().await?;
    let (audit_database, audit_settings) = audit.stop().await?;
    crm.shutdown().await?;
    // Within the configured age the same scope and period still carries CRM's summary, with
    // the time it was computed ...
    let reused = client
        .get_scorecard(pb::GetScorecardRequest {
            period: Some(period),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(
        !reused.missing.iter().any(|m| m.starts_with("crm")),
        "{:?}",
        reused.missing
    );
    let reused = reused.loyalty.unwrap_or_default();
    assert_eq!(
        (reused.members, reused.as_of, reused.period),
        (loyalty.members, loyalty.as_of, loyalty.period)
    );
    // ... but a period CRM was never asked about cannot be answered without it.
    let day_earlier = |t: Option<prost_types::Timestamp>| {
        t.map(|t| prost_types::Timestamp {
            seconds: t.seconds - 86_400,
            nanos: 0,
        })
    };
    let unseen = TimeRange {
        start_time: day_earlier(period.start_time),
        end_time: day_earlier(period.end_time),
    };
    let partial = client
        .get_scorecard(pb::GetScorecardRequest {
            property_ids: vec![],
            region: String::new(),
            period: Some(unseen),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(partial.properties.len(), 6);
    assert!(
        partial.missing.iter().any(|m| m.starts_with("facilities")),
        "{:?}",
        partial.missing
    );
    let component = partial.properties[0]
        .components
        .iter()
        .find(|c| c.kpi == "work_order_attainment")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        component.contribution, None,
        "no silent zero for the missing part"
    );
    assert!(
        partial.missing.iter().any(|m| m.starts_with("audit")),
        "{:?}",
        partial.missing
    );
    assert!(
        partial.missing.iter().any(|m| m.starts_with("crm")) && partial.loyalty.is_none(),
        "{:?}",
        partial.missing
    );

    // Facilities and audit come back on their addresses. The gateway gave up on them above and
    // now pauses its retries to them, yet each read still asks once: the next scorecard has
    // their parts again, without waiting out the pause.
    let facilities = spawn_service_on(
        &guestloop_facilities::DEFINITION,
        facilities_settings,
        Some(facilities_database),
        ports[1],
    )
    .await?;
    let audit = spawn_service_on(
        &guestloop_audit::DEFINITION,
        audit_settings,
        Some(audit_database),
        ports[3],
    )
    .await?;
    let recovered = client
        .get_scorecard(pb::GetScorecardRequest {
            period: Some(unseen),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(
        !recovered
            .missing
            .iter()
            .any(|m| m.starts_with("facilities") || m.starts_with("audit")),
        "{:?}",
        recovered.missing
    );
    assert!(
        recovered.missing.iter().any(|m| m.starts_with("crm")),
        "CRM is still down: {:?}",
        recovered.missing
    );
    let contribution = |unit: &pb::ScoredUnit, kpi: &str| {
        unit.components
            .iter()
            .find(|c| c.kpi == kpi)
            .and_then(|c| c.contribution)
    };
    for kpi in ["work_order_attainment", "audit_score"] {
        assert!(
            recovered
                .properties
                .iter()
                .any(|unit| contribution(unit, kpi).is_some()),
            "{kpi} is scored again"
        );
    }
    // The recovered parts are the backends' own figures for that period, widened to whole days.
    let covered = recovered.period.unwrap_or_default();
    let (from, to) = (
        covered.start_time.map_or(0, |t| t.seconds),
        covered.end_time.map_or(0, |t| t.seconds),
    );
    assert!(
        from % 86_400 == 0
            && to % 86_400 == 0
            && from <= unseen.start_time.map_or(0, |t| t.seconds)
            && to >= unseen.end_time.map_or(0, |t| t.seconds),
        "whole days around the period asked for: {covered:?}"
    );
    let expected = expected_counts(
        complaint_sums(&pool, from, to).await?,
        &facilities.database.admin_pool().await?,
        &audit.database.admin_pool().await?,
        from,
        to,
    )
    .await?;
    let value = |unit: &pb::ScoredUnit, kpi: &str| {
        unit.components
            .iter()
            .find(|c| c.kpi == kpi)
            .and_then(|c| c.value)
    };
    for unit in &recovered.properties {
        let counts = expected.get(&unit.key).copied().unwrap_or_default();
        for kpi in ["work_order_attainment", "audit_score"] {
            let (got, want) = (value(unit, kpi), counts.value(kpi));
            assert!(
                match (got, want) {
                    (Some(got), Some(want)) => (got - want).abs() < 1e-9,
                    (got, want) => got == want,
                },
                "{} {kpi}: {got:?} vs {want:?}",
                unit.key
            );
        }
    }
    facilities.shutdown().await?;
    audit.shutdown().await?;
    gateway.shutdown().await?;
    complaints.shutdown().await
}

fn weight(kpi: &str, weight: f64, target: f64, floor: f64) -> pb::ScoreWeight {
    pb::ScoreWeight {
        kpi: kpi.into(),
        weight,
        target,
        floor,
    }
}

/// Score weights belong to the whole chain: a token for some properties may read but not change
/// them, bad sets are refused with the field named and change nothing, concurrent updates leave
/// exactly one whole set, and one chain's weights are not another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn score_weights_are_the_whole_chains_and_change_one_set_at_a_time() -> anyhow::Result<()> {
    use guestloop_kit::auth::PropertyScope;
    let gateway = guestloop_testkit::spawn_service(&guestloop_gateway::DEFINITION).await?;
    let as_manager = |scope: PropertyScope, chain: &str| {
        TokenBuilder::new(Role::ChainQualityManager)
            .chain(chain)
            .scope(scope)
            .mint()
    };
    let mut chain_wide = GatewayServiceClient::new(
        gateway
            .channel_with_token(&as_manager(PropertyScope::all(), "chain-a")?)
            .await?,
    );
    let mut one_property = GatewayServiceClient::new(
        gateway
            .channel_with_token(&as_manager(
                PropertyScope::Listed(vec!["vienna".into()]),
                "chain-a",
            )?)
            .await?,
    );
    let mut other_chain = GatewayServiceClient::new(
        gateway
            .channel_with_token(&as_manager(PropertyScope::all(), "chain-b")?)
            .await?,
    );
    let read = |mut client: GatewayServiceClient<_>| async move {
        anyhow::Ok(
            client
                .get_score_weights(pb::GetScoreWeightsRequest {})
                .await?
                .into_inner()
                .weights,
        )
    };
    let defaults = read(chain_wide.clone()).await?;
    assert_eq!(defaults.len(), default_weights().len());

    let csat_only = vec![weight("csat_mean", 1.0, 4.5, 2.0)];
    let refused = one_property
        .update_score_weights(pb::UpdateScoreWeightsRequest {
            weights: csat_only.clone(),
        })
        .await
        .expect_err("a token for one property");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let bad = chain_wide
        .update_score_weights(pb::UpdateScoreWeightsRequest {
            weights: vec![weight("csat_mean", 0.5, 4.5, 2.0)],
        })
        .await
        .expect_err("weights summing to 0.5");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(guestloop_testkit::violated_fields(&bad), vec!["weights"]);
    assert_eq!(read(chain_wide.clone()).await?, defaults, "nothing changed");
    // The scoped token still reads the chain's weights.
    assert_eq!(read(one_property.clone()).await?, defaults);

    // Disjoint sets sent at once: the chain ends with one of them whole.
    let sets: Vec<Vec<pb::ScoreWeight>> = vec![
        csat_only.clone(),
        vec![weight("nps", 1.0, 50.0, -20.0)],
        vec![
            weight("sla_attainment", 0.5, 0.95, 0.5),
            weight("fcr_rate", 0.5, 0.8, 0.3),
        ],
        vec![weight("repeat_rate", 1.0, 0.02, 0.2)],
    ];
    let mut updates = Vec::new();
    for _ in 0..4 {
        for set in &sets {
            let mut client = chain_wide.clone();
            let set = set.clone();
            updates.push(tokio::spawn(async move {
                client
                    .update_score_weights(pb::UpdateScoreWeightsRequest { weights: set })
                    .await
                    .map(|r| r.into_inner())
            }));
        }
    }
    for update in updates {
        update.await??;
    }
    let mut stored = read(chain_wide.clone()).await?;
    stored.sort_by(|a, b| a.kpi.cmp(&b.kpi));
    assert!(
        sets.iter().any(|set| {
            let mut set = set.clone();
            set.sort_by(|a, b| a.kpi.cmp(&b.kpi));
            set == stored
        }),
        "one whole set: {stored:?}"
    );
    assert_eq!(
        read(other_chain.clone()).await?,
        defaults,
        "another chain keeps its own"
    );
    let _ = other_chain
        .update_score_weights(pb::UpdateScoreWeightsRequest { weights: csat_only })
        .await?;
    gateway.shutdown().await
}
