//! The quality managers' dashboard in a real headless browser (Debian's chromium): served by the
//! gateway, no CDN, it signs in with the token from the URL fragment, calls the API and shows the
//! league table, the composite score, the score explained, the trend and the SLA lists. The test
//! reads the page as rendered (after its scripts ran) and checks what a person would see against
//! the numbers the API returns in the same run.
//!
//! CI installs chromium; elsewhere, without a browser, the test says so and passes unless `CI`
//! is set.

use std::process::Stdio;
use std::time::Duration;

use guestloop_kit::auth::Role;
use guestloop_testkit::http::call;
use guestloop_testkit::{spawn_service_on, test_settings, TokenBuilder};

fn browser() -> Option<String> {
    if let Ok(path) = std::env::var("GUESTLOOP_CHROMIUM") {
        return Some(path);
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            std::process::Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(str::to_string)
}

/// The text inside the element with `id` (first match), tags stripped.
fn text_of(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let open_end = at + dom[at..].find('>')? + 1;
    let close = open_end + dom[open_end..].find("</")?;
    Some(dom[open_end..close].trim().to_string())
}

/// The cells of each `<tr data-property=...>` row of the league table.
fn league_rows(dom: &str) -> Vec<Vec<String>> {
    dom.split("<tr data-property=\"")
        .skip(1)
        .map(|chunk| {
            let row = chunk.split("</tr>").next().unwrap_or_default();
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let start = cell.find('>').map_or(0, |i| i + 1);
                    let end = cell.find("</td>").unwrap_or(cell.len());
                    cell[start..end].trim().to_string()
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_what_the_api_says() -> anyhow::Result<()> {
    let Some(chromium) = browser() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have a browser for the dashboard test"
        );
        eprintln!("dashboard test skipped: no chromium on this machine (apt-get install chromium)");
        return Ok(());
    };
    let ports: Vec<u16> = (0..3)
        .map(|_| guestloop_kit::ports::free_port())
        .collect::<Result<_, _>>()?;
    let mut settings = test_settings();
    settings.demo = true;
    for (name, port) in [
        ("complaints", ports[0]),
        ("facilities", ports[1]),
        ("gateway", ports[2]),
    ] {
        settings
            .endpoints
            .insert(name.into(), format!("http://127.0.0.1:{port}"));
    }
    for name in ["crm", "audit"] {
        settings
            .endpoints
            .insert(name.into(), "http://127.0.0.1:9".into());
    }
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

    // Let the rollup settle on the demo data, so the page and the API see the same numbers.
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The page itself: self-contained, nothing fetched from elsewhere.
    let (status, content_type, page) = call(http, "GET", "/dashboard", None, None).await?;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(
        ![
            "src=\"http",
            "href=\"http",
            "<link",
            "@import",
            "url(http",
            "fetch(\"http"
        ]
        .iter()
        .any(|remote| page.contains(remote)),
        "no CDN or remote asset"
    );

    let token = TokenBuilder::new(Role::ChainQualityManager)
        .chain(guestloop_kit::demo::DEMO_CHAIN)
        .mint()?;
    let profile = tempfile_dir()?;
    let output = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=20000",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("http://{http}/dashboard#token={token}"),
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output).await??;
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        dom.contains("data-state=\"ready\""),
        "the page did not finish loading: {}\n{}",
        text_of(&dom, "error").unwrap_or_default(),
        String::from_utf8_lossy(&output.stderr)
    );

    // The same numbers from the API, for the same 90 days (the page's default period).
    let now = chrono::Utc::now();
    let query = format!(
        "/v1/scorecard?start={}&end={}",
        (now - chrono::Duration::days(90)).format("%Y-%m-%dT%H:%M:%SZ"),
        now.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let (status, _, body) = call(http, "GET", &query, Some(&token), None).await?;
    assert_eq!(status, 200, "{body}");
    let card: serde_json::Value = serde_json::from_str(&body)?;
    let properties = card["properties"].as_array().cloned().unwrap_or_default();
    assert_eq!(properties.len(), 6, "the demo chain's six properties");

    let rows = league_rows(&dom);
    assert_eq!(
        rows.len(),
        properties.len(),
        "one league-table row per property"
    );
    let close = |shown: &str, value: &serde_json::Value| -> bool {
        match (shown.parse::<f64>(), value.as_f64()) {
            (Ok(a), Some(b)) => (a - b).abs() <= 0.051,
            (Err(_), None) => shown == "–",
            _ => false,
        }
    };
    for (row, property) in rows.iter().zip(&properties) {
        // rank, property, region, SQS, change, complaints
        let rank = property["rank"].as_i64().unwrap_or_default();
        assert_eq!(
            row[0],
            if rank > 0 {
                rank.to_string()
            } else {
                "–".into()
            }
        );
        assert_eq!(row[1], property["key"].as_str().unwrap_or_default());
        assert_eq!(row[2], property["region"].as_str().unwrap_or_default());
        assert!(close(&row[3], &property["sqs"]), "{row:?} vs {property}");
        assert_eq!(row[5], property["complaints"].to_string());
    }
    let scope_sqs = text_of(&dom, "scope-sqs").unwrap_or_default();
    assert!(
        close(&scope_sqs, &card["scope"]["sqs"]),
        "{scope_sqs} vs {}",
        card["scope"]
    );
    assert_eq!(
        text_of(&dom, "scope-complaints").as_deref(),
        Some(card["scope"]["complaints"].to_string().as_str())
    );
    assert_eq!(
        text_of(&dom, "selected-property").as_deref(),
        properties[0]["key"].as_str(),
        "the best property is explained first"
    );
    assert!(dom.contains("sla_attainment") && dom.contains("work_order_attainment"));
    assert!(
        dom.contains("data-points=\"") && !dom.contains("data-points=\"0\""),
        "the trend has points"
    );

    let (_, _, body) = call(
        http,
        "GET",
        "/v1/complaints?clock=breached&page_size=20",
        Some(&token),
        None,
    )
    .await?;
    let breached: serde_json::Value = serde_json::from_str(&body)?;
    let shown = text_of(&dom, "breach-count").unwrap_or_default();
    let expected = breached["complaints"].as_array().map_or(0, Vec::len);
    assert_eq!(
        shown.trim_end_matches('+'),
        expected.to_string(),
        "breach count as the API lists it"
    );
    assert!(expected > 0, "the demo chain has breached complaints");

    gateway.shutdown().await?;
    facilities.shutdown().await?;
    complaints.shutdown().await
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("guestloop-chromium-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
