//! The gateway's HTTP/JSON API as a mobile app and a BI client use it: same JWT auth, JSON and
//! CSV scorecards, a guest filing, following and rating complaints and reading their loyalty
//! account, and RFC 9457 problem details for errors.

use guestloop_kit::auth::Role;
use guestloop_testkit::http::call;
use guestloop_testkit::{spawn_service_on, test_settings, TokenBuilder};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_and_bi_use_the_http_api() -> anyhow::Result<()> {
    let ports: Vec<u16> = (0..3)
        .map(|_| guestloop_kit::ports::free_port())
        .collect::<Result<_, _>>()?;
    let mut settings = test_settings();
    for (name, port) in [
        ("complaints", ports[0]),
        ("crm", ports[1]),
        ("gateway", ports[2]),
    ] {
        settings
            .endpoints
            .insert(name.into(), format!("http://127.0.0.1:{port}"));
    }
    settings
        .endpoints
        .insert("facilities".into(), "http://127.0.0.1:9".into());
    settings
        .endpoints
        .insert("audit".into(), "http://127.0.0.1:9".into());
    let complaints = spawn_service_on(
        &guestloop_complaints::DEFINITION,
        settings.clone(),
        None,
        ports[0],
    )
    .await?;
    let crm =
        spawn_service_on(&guestloop_crm::DEFINITION, settings.clone(), None, ports[1]).await?;
    let gateway = spawn_service_on(
        &guestloop_gateway::DEFINITION,
        settings.clone(),
        None,
        ports[2],
    )
    .await?;
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let state = guestloop_gateway::http::HttpState::from_settings(&settings)?;
    let (http, _task) =
        guestloop_gateway::http::serve(([127, 0, 0, 1], 0).into(), state, stop_rx).await?;

    // No token: a problem document, not a bare status.
    let (status, content_type, body) = call(http, "GET", "/v1/me/complaints", None, None).await?;
    assert_eq!(status, 401);
    assert_eq!(content_type, "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(problem["status"], 401);

    // A guest registered in CRM files, follows and rates a complaint from the app.
    let admin = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let mut crm_client = guestloop_proto::crm::v1::crm_service_client::CrmServiceClient::new(
        crm.channel_with_token(&admin).await?,
    );
    let guest = crm_client
        .create_guest(guestloop_proto::crm::v1::CreateGuestRequest {
            request_id: "g".into(),
            guest: Some(guestloop_proto::crm::v1::Guest {
                guest_id: "app-guest".into(),
                given_name: "Noor".into(),
                family_name: "Haddad".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let token = TokenBuilder::new(Role::Guest)
        .guest(&guest.guest_id)
        .mint()?;
    let filed = r#"{"request_id":"app-1","property_id":"dubai","category":"cleanliness","description":"Hair in the shower","room":"1701"}"#;
    let (status, _, body) =
        call(http, "POST", "/v1/me/complaints", Some(&token), Some(filed)).await?;
    assert_eq!(status, 201, "{body}");
    let complaint: serde_json::Value = serde_json::from_str(&body)?;
    let id = complaint["complaint_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (status, _, body) = call(http, "GET", "/v1/me/complaints", Some(&token), None).await?;
    assert_eq!(status, 200);
    let mine: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(mine["complaints"].as_array().map(Vec::len), Some(1));
    let (status, _, body) = call(
        http,
        "POST",
        &format!("/v1/me/complaints/{id}/rating"),
        Some(&token),
        Some(r#"{"csat":5}"#),
    )
    .await?;
    assert_eq!(status, 422, "not resolved yet: {body}");
    // The guest's own route is for guest tokens: staff are refused as on every /v1/me route.
    let supervisor = TokenBuilder::new(Role::Supervisor)
        .properties(&["dubai"])
        .mint()?;
    let (status, _, body) = call(
        http,
        "POST",
        &format!("/v1/me/complaints/{id}/rating"),
        Some(&supervisor),
        Some(r#"{"csat":1}"#),
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = call(http, "GET", "/v1/me/loyalty", Some(&token), None).await?;
    assert_eq!(status, 200, "{body}");
    let loyalty: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(loyalty["tier"], "new");

    // BI: the scorecard as JSON and as CSV with stable columns.
    let manager = TokenBuilder::new(Role::ChainQualityManager).mint()?;
    let now = chrono::Utc::now();
    let query = format!(
        "/v1/scorecard?start={}&end={}",
        (now - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ"),
        (now + chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ")
    );
    // The KPI rollup folds the new complaint in within a second.
    let mut card = serde_json::Value::Null;
    for _ in 0..50 {
        let (status, _, body) = call(http, "GET", &query, Some(&manager), None).await?;
        assert_eq!(status, 200, "{body}");
        card = serde_json::from_str(&body)?;
        // (The property is on the card at once, with no complaints until the rollup runs.)
        if card["properties"][0]["complaints"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(card["properties"][0]["key"], "dubai");
    assert_eq!(card["properties"][0]["complaints"], 1);
    // The trend of the same period, per day, carries each bucket's complaint KPIs too.
    let (status, _, body) = call(
        http,
        "GET",
        &format!(
            "/v1/scorecard/trend?start={}&end={}&granularity=day",
            (now - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ"),
            (now + chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ")
        ),
        Some(&manager),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let trend: serde_json::Value = serde_json::from_str(&body)?;
    let points = trend["points"].as_array().cloned().unwrap_or_default();
    assert!(!points.is_empty(), "{trend}");
    assert!(
        points.iter().all(|p| p["kpis"].is_object()),
        "every point has its KPI block: {trend}"
    );
    // The complaint KPIs ride along: one complaint, so an escalation rate of 0 or 1.
    let escalation = card["properties"][0]["kpis"]["escalation_rate"].as_f64();
    assert!(
        matches!(escalation, Some(r) if r == 0.0 || r == 1.0),
        "{}",
        card["properties"][0]["kpis"]
    );
    assert!(card["missing"].as_array().is_some_and(|m| m
        .iter()
        .any(|x| x.as_str().is_some_and(|s| s.starts_with("facilities")))));
    let response = guestloop_testkit::http::exchange(
        http,
        "GET",
        &format!("{query}&format=csv"),
        Some(&manager),
        None,
    )
    .await?;
    let (status, content_type, csv) = (
        response.status,
        response.content_type.clone(),
        response.body.clone(),
    );
    // Facilities is not running here: the CSV says so in a header.
    assert!(
        response
            .header("guestloop-missing")
            .is_some_and(|m| m.split(',').any(|b| b == "facilities")),
        "{:?}",
        response.headers
    );
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/csv; charset=utf-8")
    );
    assert_eq!(
        csv.lines().next(),
        Some("property_id,region,kpi,value,normalized,weight,contribution,sqs,level,previous_sqs,period_start,period_end")
    );
    let regions = card["regions"].as_array().map_or(0, Vec::len);
    assert_eq!(
        csv.lines().count(),
        1 + 7 * (1 + regions + 1),
        "one row per KPI of the property, of each region and of the scope"
    );
    let levels: Vec<&str> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(8))
        .collect();
    assert_eq!(levels.iter().filter(|l| **l == "scope").count(), 7);
    assert_eq!(levels.iter().filter(|l| **l == "property").count(), 7);
    // Every row names the period its figures cover, as the JSON card does.
    let period = format!(
        "{},{}",
        card["period_start"].as_str().unwrap_or_default(),
        card["period_end"].as_str().unwrap_or_default()
    );
    assert!(period.len() > 2, "{card}");
    assert!(
        csv.lines().skip(1).all(|l| l.ends_with(&period)),
        "{period}: {csv}"
    );
    let (status, _, _) = call(
        http,
        "GET",
        "/v1/scorecard?start=yesterday&end=today",
        Some(&manager),
        None,
    )
    .await?;
    assert_eq!(status, 400);
    // A period the backend refuses is reported under the parameter's name, field by field.
    let (status, _, body) = call(
        http,
        "GET",
        "/v1/scorecard?start=2026-11-01T00:00:00Z&end=2026-11-01T00:00:00Z",
        Some(&manager),
        None,
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    let problem: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(problem["errors"][0]["field"], "end", "{body}");
    assert!(
        !problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("period.end_time"),
        "{body}"
    );
    let (status, _, _) = call(http, "GET", &query, Some(&token), None).await?;
    assert_eq!(status, 403, "guests do not read scorecards");

    // A property id that reads as a formula reaches the CSV as text, never as a formula.
    let formula = r#"{"request_id":"app-2","property_id":"=1+1","category":"cleanliness","description":"Towels missing"}"#;
    let (status, _, body) = call(
        http,
        "POST",
        "/v1/me/complaints",
        Some(&token),
        Some(formula),
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    let csv = guestloop_testkit::http::exchange(
        http,
        "GET",
        &format!("{query}&format=csv"),
        Some(&manager),
        None,
    )
    .await?
    .body;
    assert!(
        csv.lines().any(|l| l.starts_with("'=1+1,")),
        "the formula-like id is text: {csv}"
    );
    assert!(!csv.lines().any(|l| l.starts_with('=')), "{csv}");

    // The guest's complaints, page by page: each once.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let (status, _, body) = call(
            http,
            "GET",
            &format!("/v1/me/complaints?page_size=1&page_token={page_token}"),
            Some(&token),
            None,
        )
        .await?;
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body)?;
        for complaint in page["complaints"].as_array().cloned().unwrap_or_default() {
            seen.push(
                complaint["complaint_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        page_token = page["next_page_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if page_token.is_empty() || seen.len() > 2 {
            break;
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 2, "both complaints, once each: {seen:?}");
    let (status, _, body) = call(
        http,
        "GET",
        "/v1/me/complaints?page_size=0",
        Some(&token),
        None,
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("page_size"), "{body}");

    // The bearer scheme is case-insensitive, and a 401 names it.
    let lower = guestloop_testkit::http::exchange_with(
        http,
        "GET",
        "/v1/me/complaints",
        Some(&format!("bearer {token}")),
        None,
    )
    .await?;
    assert_eq!(lower.status, 200, "{}", lower.body);
    let anonymous =
        guestloop_testkit::http::exchange(http, "GET", "/v1/me/complaints", None, None).await?;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));

    // Malformed requests are problem documents too, never plain-text rejections.
    let (status, content_type, body) = call(
        http,
        "POST",
        "/v1/me/complaints",
        Some(&token),
        Some(r#"{"request_id": 7}"#),
    )
    .await?;
    assert_eq!(
        (status, content_type.as_str()),
        (400, "application/problem+json"),
        "{body}"
    );
    let (status, content_type, _) =
        call(http, "DELETE", "/v1/me/loyalty", Some(&token), None).await?;
    assert_eq!(
        (status, content_type.as_str()),
        (405, "application/problem+json")
    );

    // The arrival brief: the guest's allergy and open complaint, with facilities named missing.
    crm_client
        .add_preference(guestloop_proto::crm::v1::AddPreferenceRequest {
            guest_id: guest.guest_id.clone(),
            preference: Some(guestloop_proto::crm::v1::Preference {
                group: "diet".into(),
                value: "shellfish".into(),
                polarity: guestloop_proto::crm::v1::Polarity::Allergy as i32,
                ..Default::default()
            }),
        })
        .await?;
    crm_client
        .upsert_stays(guestloop_proto::crm::v1::UpsertStaysRequest {
            stays: vec![guestloop_proto::crm::v1::Stay {
                property_id: "dubai".into(),
                pms_reservation_id: "DXB-1".into(),
                guest_id: guest.guest_id.clone(),
                arrival_date: "2031-05-01".into(),
                departure_date: "2031-05-04".into(),
                room: "1701".into(),
                status: guestloop_proto::crm::v1::StayStatus::Booked as i32,
                ..Default::default()
            }],
        })
        .await?;
    let front_desk = TokenBuilder::new(Role::Agent)
        .properties(&["dubai"])
        .department("front_office")
        .mint()?;
    let (status, _, body) = call(
        http,
        "GET",
        "/v1/properties/dubai/arrival-brief?date=2031-05-01",
        Some(&front_desk),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let brief: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(brief["arriving"], 1);
    let entry = &brief["entries"][0];
    assert_eq!(entry["guest_id"], guest.guest_id.as_str());
    assert_eq!(entry["room"], "1701");
    assert_eq!(entry["avoid"][0]["kind"], "allergy");
    assert_eq!(entry["open_complaints"][0]["complaint_id"], id.as_str());
    assert_eq!(
        entry["alerts"],
        serde_json::json!(["ALLERGY", "OPEN_COMPLAINT"])
    );
    assert!(brief["missing"].as_array().is_some_and(|m| m
        .iter()
        .any(|x| x.as_str().is_some_and(|s| s.starts_with("facilities")))));
    let (status, _, _) = call(
        http,
        "GET",
        "/v1/properties/london/arrival-brief?date=2031-05-01",
        Some(&front_desk),
        None,
    )
    .await?;
    assert_eq!(status, 403, "another property's brief is refused");
    let (status, _, body) = call(
        http,
        "GET",
        "/v1/properties/dubai/arrival-brief?date=May",
        Some(&front_desk),
        None,
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("date"), "{body}");

    // The OpenAPI document lists exactly the routes served.
    let (status, _, body) = call(http, "GET", "/openapi.json", None, None).await?;
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&body)?;
    assert!(document["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1")));
    assert!(
        document["components"]["schemas"]["ComplaintKpis"]["properties"]
            ["first_response_mean_seconds"]
            .is_object(),
        "the scorecard's KPI block is described"
    );
    assert!(
        document["components"]["schemas"]["FieldError"]["properties"]["field"].is_object(),
        "a problem's field errors are described"
    );
    assert!(
        document["paths"]["/v1/me/loyalty"]["get"]["responses"]["503"]["headers"]["Retry-After"]
            .is_object(),
        "a 503 says when to ask again"
    );
    let mut paths: Vec<&str> = document["paths"]
        .as_object()
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    paths.sort_unstable();
    assert_eq!(
        paths,
        vec![
            "/healthz",
            "/v1/complaints",
            "/v1/complaints/{complaint_id}",
            "/v1/complaints/{complaint_id}/actions",
            "/v1/events/{service}",
            "/v1/me/complaints",
            "/v1/me/complaints/{complaint_id}/rating",
            "/v1/me/loyalty",
            "/v1/me/loyalty/history",
            "/v1/properties/{property_id}/arrival-brief",
            "/v1/properties/{property_id}/inspections",
            "/v1/properties/{property_id}/work-orders",
            "/v1/scorecard",
            "/v1/scorecard/trend",
            "/v1/work-orders/{work_order_id}/actions",
            "/v1/work-queue"
        ]
    );

    gateway.shutdown().await?;
    crm.shutdown().await?;
    complaints.shutdown().await
}
