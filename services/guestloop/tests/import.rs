//! `guestloop import stays` as an integrator runs it: a CSV export into a running CRM, in
//! concurrent batches; a second run changes nothing; a malformed file or a refused row stops the
//! import with the line named and a failing exit status; an older export run late changes
//! nothing.

use std::io::Write;
use std::process::Command;

use guestloop_kit::auth::Role;
use guestloop_testkit::{fresh_database, spawn_service, spawn_service_on, TokenBuilder};

const HEADER: &str = "property_id,pms_reservation_id,guest_id,arrival_date,departure_date,room,rate_currency,rate_minor,spend_currency,spend_minor,status";

fn write_csv(path: &std::path::Path, lines: &[String]) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(path)?;
    writeln!(file, "{HEADER}")?;
    for line in lines {
        writeln!(file, "{line}")?;
    }
    Ok(())
}

fn import(
    file: &std::path::Path,
    endpoint: &str,
    token: &str,
) -> anyhow::Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_guestloop"))
        .args(["import", "stays"])
        .arg(file)
        .args([
            "--endpoint",
            endpoint,
            "--token",
            token,
            "--batch",
            "700",
            "--workers",
            "3",
        ])
        .env("RUST_LOG", "error")
        .output()?)
}

/// How many stays CRM holds at `property`, and how many earnings they posted.
async fn stays_and_earnings(pool: &sqlx::PgPool, property: &str) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT (SELECT count(*) FROM crm.stays WHERE property_id = $1), \
                (SELECT count(*) FROM crm.ledger WHERE source LIKE 'stay:' || $1 || '/%')",
    )
    .bind(property)
    .fetch_one(pool)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pms_export_is_imported_once_and_bad_lines_are_named() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let token = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let endpoint = service.url();
    let dir = std::env::temp_dir().join(format!("guestloop-import-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let rows: Vec<String> = (0..5_000)
        .map(|n| {
            let status = if n % 5 == 0 { "cancelled" } else { "checked_out" };
            format!(
                "lisbon,L{n:05},import-guest-{},2026-02-01,2026-02-0{},{},EUR,12000,EUR,{},{status}",
                n % 300,
                2 + n % 3,
                100 + n % 80,
                n % 7 * 1000
            )
        })
        .collect();
    let file = dir.join("stays.csv");
    write_csv(&file, &rows)?;
    let first = import(&file, &endpoint, &token)?;
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("5000 stays")
            && stdout.contains("5000 inserted")
            && stdout.contains("0 batches sent again"),
        "{stdout}"
    );
    let pool = service.database.admin_pool().await?;
    let (stays, earned) = stays_and_earnings(&pool, "lisbon").await?;
    assert_eq!(
        (stays, earned),
        (5_000, 4_000),
        "checked-out stays earn, cancelled ones do not"
    );

    let second = import(&file, &endpoint, &token)?;
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success());
    assert!(
        stdout.contains("0 inserted, 0 updated, 5000 unchanged"),
        "{stdout}"
    );
    let earned_again: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.ledger WHERE source LIKE 'stay:lisbon/%'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(earned_again, 4_000, "a second import earns nothing twice");

    // A value that is not a number: the line is named before anything is sent for it.
    let bad_number = dir.join("bad-number.csv");
    write_csv(
        &bad_number,
        &["lisbon,Z1,g,2026-01-01,2026-01-03,1,EUR,abc,EUR,0,checked_out".to_string()],
    )?;
    let refused = import(&bad_number, &endpoint, &token)?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("line 2, column rate_minor: `abc`"),
        "{stderr}"
    );
    // A row CRM refuses: the batch's first line and the field are named; nothing is written.
    let bad_dates = dir.join("bad-dates.csv");
    write_csv(
        &bad_dates,
        &[
            "lisbon,Z2,g,2026-01-01,2026-01-03,1,EUR,1,EUR,0,checked_out".to_string(),
            "lisbon,Z3,g,2026-01-05,2026-01-04,1,EUR,1,EUR,0,checked_out".to_string(),
        ],
    )?;
    let refused = import(&bad_dates, &endpoint, &token)?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("line 3 was refused")
            && stderr.contains("stays[1].departure_date")
            && !stderr.contains("sent"),
        "a refusal is final, not sent again: {stderr}"
    );
    let written: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.stays WHERE pms_reservation_id LIKE 'Z%'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(written, 0);
    let _ = std::fs::remove_dir_all(&dir);
    service.shutdown().await
}

/// A booking with no rate or spend yet leaves their amount cells empty: that is no amount, as
/// when the columns are missing, not a bad line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_amount_cells_are_imported_as_no_amount() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let token = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let dir = std::env::temp_dir().join(format!("guestloop-import-blank-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("blank-amounts.csv");
    write_csv(
        &file,
        &[
            "faro,BL1,faro-guest,2026-01-01,2026-01-03,101,,,,,booked".to_string(),
            "faro,BL2,faro-guest,2026-01-05,2026-01-07,102,EUR,,EUR,2500,booked".to_string(),
        ],
    )?;
    let output = import(&file, &service.url(), &token)?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pool = service.database.admin_pool().await?;
    let amounts: Vec<(String, String, i64, String, i64)> = sqlx::query_as(
        "SELECT pms_reservation_id, rate_currency, rate_minor, spend_currency, spend_minor \
         FROM crm.stays WHERE property_id = 'faro' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        amounts,
        vec![
            ("BL1".into(), String::new(), 0, String::new(), 0),
            ("BL2".into(), "EUR".into(), 0, "EUR".into(), 2500),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
    service.shutdown().await
}

/// An export with the PMS's modification times: an older export of the same reservations, run
/// after a newer one, is reported as older and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_export_run_late_changes_nothing() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let token = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let dir = std::env::temp_dir().join(format!("guestloop-import-older-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let export = |name: &str, status: &str, modified: &str| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.join(name);
        let mut file = std::fs::File::create(&path)?;
        writeln!(file, "{HEADER},pms_modified_time")?;
        writeln!(
            file,
            "braga,V1,braga-guest,2026-01-01,2026-01-03,101,EUR,9000,EUR,0,{status},{modified}"
        )?;
        Ok(path)
    };
    let newer = export("newer.csv", "checked_out", "2026-01-03T11:00:00Z")?;
    let older = export("older.csv", "in_house", "2026-01-02T09:00:00+01:00")?;
    let first = import(&newer, &service.url(), &token)?;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let late = import(&older, &service.url(), &token)?;
    let stdout = String::from_utf8_lossy(&late.stdout);
    assert!(
        late.status.success(),
        "{}",
        String::from_utf8_lossy(&late.stderr)
    );
    assert!(
        stdout.contains("0 inserted, 0 updated, 0 unchanged, 1 older than the version CRM holds"),
        "{stdout}"
    );
    let pool = service.database.admin_pool().await?;
    let status: String =
        sqlx::query_scalar("SELECT status FROM crm.stays WHERE property_id = 'braga'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(status, "checked_out");
    assert_eq!(stays_and_earnings(&pool, "braga").await?, (1, 1));
    let _ = std::fs::remove_dir_all(&dir);
    service.shutdown().await
}

/// The line an error names is the line of the file, as an editor numbers it: after blank lines,
/// in a file with CRLF line ends, and after a quoted field that spans two lines; a row CRM
/// refuses is named by its own line, not the line its batch starts on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_line_of_the_file() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let token = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let endpoint = service.url();
    let dir = std::env::temp_dir().join(format!("guestloop-import-lines-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let row = |reservation: &str, room: &str, dates: &str, status: &str| {
        format!("lisbon,{reservation},g1,{dates},{room},EUR,100,EUR,0,{status}")
    };
    let ok = "2026-01-01,2026-01-03";
    for (name, content, expected) in [
        (
            "multi-line.csv",
            format!(
                "{HEADER}\n{}\n{}\n",
                row("ML1", "\"101\nannex\"", ok, "checked_out"),
                row("ML2", "102", ok, "checkedout")
            ),
            "line 4: status `checkedout`",
        ),
        (
            "blank-line.csv",
            format!(
                "{HEADER}\n{}\n\n{}\n",
                row("BL1", "101", ok, "checked_out"),
                row("BL2", "102", ok, "checkedout")
            ),
            "line 4: status `checkedout`",
        ),
        (
            "crlf-refused.csv",
            format!(
                "{HEADER}\r\n{}\r\n\r\n{}\r\n{}\r\n",
                row("CR1", "101", ok, "checked_out"),
                row("CR2", "102", ok, "checked_out"),
                row("CR3", "103", "2026-01-05,2026-01-04", "checked_out")
            ),
            "line 5 was refused",
        ),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, content)?;
        let output = import(&file, &endpoint, &token)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    let pool = service.database.admin_pool().await?;
    assert_eq!(
        stays_and_earnings(&pool, "lisbon").await?,
        (0, 0),
        "nothing of a file with a bad line is written"
    );
    let _ = std::fs::remove_dir_all(&dir);
    service.shutdown().await
}

/// CRM is down when the import starts (restarting, say): the batches are sent again with
/// backoff until it answers, and each stay is imported once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_started_while_crm_is_down_goes_through_once_it_is_up() -> anyhow::Result<()> {
    let database = fresh_database().await?;
    let port = guestloop_kit::ports::free_port()?;
    let token = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let dir = std::env::temp_dir().join(format!("guestloop-import-down-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rows: Vec<String> = (0..1_500)
        .map(|n| {
            format!(
                "porto,P{n:05},porto-guest-{},2026-02-01,2026-02-03,{},EUR,9000,EUR,0,checked_out",
                n % 50,
                100 + n % 40
            )
        })
        .collect();
    let file = dir.join("stays.csv");
    write_csv(&file, &rows)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let running = std::thread::spawn({
        let (file, endpoint, token) = (file.clone(), endpoint.clone(), token.clone());
        move || import(&file, &endpoint, &token)
    });
    // Long enough for the importer's first attempts to find nothing listening.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let service = spawn_service_on(
        &guestloop_crm::DEFINITION,
        guestloop_testkit::test_settings(),
        Some(database),
        port,
    )
    .await?;
    let output = tokio::task::spawn_blocking(move || running.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the importer thread panicked"))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1500 inserted"), "{stdout}");
    assert!(
        !stdout.contains(" 0 batches sent again"),
        "the first attempts found CRM down: {stdout}"
    );
    let pool = service.database.admin_pool().await?;
    let (stays, earned) = stays_and_earnings(&pool, "porto").await?;
    assert_eq!(
        (stays, earned),
        (1_500, 1_500),
        "each stay once, each earning once"
    );
    let _ = std::fs::remove_dir_all(&dir);
    service.shutdown().await
}
