//! A private PostgreSQL server started from the local server binaries (`initdb`, `pg_ctl`,
//! `postgres`), used by `guestloop up` when no `DATABASE_URL` is set and by the test kit.
//!
//! PostgreSQL refuses to run as root. When this process is root, the data folder is handed to
//! the unprivileged `postgres` system user and every server command runs as that user.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;
use tokio::process::Command;

const INSTALL_HINT: &str =
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH \
or under /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: `apt-get install postgresql`; \
Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql@16`) or set DATABASE_URL \
to an existing server.";

/// Finds the folder holding `initdb`, `pg_ctl` and `postgres` (newest version first).
pub fn find_server_binaries() -> anyhow::Result<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_all(d)) {
            // Follow links (e.g. /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb) to
            // the real folder, which also holds the server's other tools (pgbench, …).
            let real = std::fs::canonicalize(dir.join("initdb"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .filter(|real| has_all(real));
            return Ok(real.unwrap_or(dir));
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_all(dir))
        .collect();
    candidates.sort();
    for fixed in ["/usr/local/pgsql/bin", "/usr/pgsql/bin"] {
        if has_all(Path::new(fixed)) {
            candidates.insert(0, (0, PathBuf::from(fixed)));
        }
    }
    candidates
        .pop()
        .map(|(_, dir)| dir)
        .ok_or_else(|| anyhow::anyhow!(INSTALL_HINT))
}

/// The unprivileged account to run the server as, when this process is root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

fn run_as() -> anyhow::Result<Option<RunAs>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")?.ok_or_else(|| {
        anyhow::anyhow!(
            "running as root, and PostgreSQL refuses to run as root: create a `postgres` system \
             user (installing the PostgreSQL server package does) or set DATABASE_URL"
        )
    })?;
    Ok(Some(RunAs {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

fn command(program: PathBuf, owner: Option<RunAs>) -> Command {
    let mut command = Command::new(program);
    if let Some(owner) = owner {
        command.uid(owner.uid).gid(owner.gid);
    }
    command.stdin(Stdio::null()).kill_on_drop(false);
    command
}

fn chown_tree(path: &Path, owner: RunAs) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
        .with_context(|| format!("cannot hand {} to the postgres user", path.display()))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

async fn run_checked(mut command: Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        anyhow::bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// How the server's life is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Durable data; started and stopped explicitly with `pg_ctl` (`guestloop up`).
    Managed,
    /// Throw-away data without fsync; the server stops and its folder is removed when this
    /// process exits, however it exits (tests).
    Ephemeral,
}

/// A private PostgreSQL server.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    owner: Option<RunAs>,
    lifetime: Lifetime,
    /// Whether this process started the server (and so stops it).
    started_here: bool,
}

impl EmbeddedPostgres {
    /// Initialises `data_dir` when empty, then starts the server on 127.0.0.1:`port`.
    pub async fn start(data_dir: &Path, port: u16, lifetime: Lifetime) -> anyhow::Result<Self> {
        let bin_dir = find_server_binaries()?;
        let owner = run_as()?;
        let data_dir = std::path::absolute(data_dir)?;
        let mut server = Self {
            bin_dir,
            data_dir,
            port,
            owner,
            lifetime,
            started_here: false,
        };
        server.initialise().await?;
        match lifetime {
            Lifetime::Managed => server.start_managed().await?,
            Lifetime::Ephemeral => server.start_ephemeral()?,
        }
        server.wait_until_ready().await?;
        Ok(server)
    }

    async fn initialise(&self) -> anyhow::Result<()> {
        if self.data_dir.join("PG_VERSION").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create {}", self.data_dir.display()))?;
        if let Some(owner) = self.owner {
            chown_tree(&self.data_dir, owner)?;
        }
        std::fs::set_permissions(
            &self.data_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        let mut initdb = command(self.bin_dir.join("initdb"), self.owner);
        initdb.arg("-D").arg(&self.data_dir).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        ]);
        if self.lifetime == Lifetime::Ephemeral {
            initdb.arg("--no-sync");
        }
        run_checked(initdb, "initdb").await?;
        let mut conf = String::from(
            "\n# guestloop\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 300\n",
        );
        if self.lifetime == Lifetime::Ephemeral {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf_path = self.data_dir.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path)?;
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing)?;
        Ok(())
    }

    async fn start_managed(&mut self) -> anyhow::Result<()> {
        let mut status = command(self.bin_dir.join("pg_ctl"), self.owner);
        status.arg("status").arg("-D").arg(&self.data_dir);
        if run_checked(status, "pg_ctl status").await.is_ok() {
            tracing::warn!(data_dir = %self.data_dir.display(), "private PostgreSQL already running, reusing it");
            return Ok(());
        }
        let mut start = command(self.bin_dir.join("pg_ctl"), self.owner);
        start
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.data_dir.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {}", self.port));
        run_checked(start, "pg_ctl start").await.with_context(|| {
            format!(
                "see {} for the server's own words",
                self.data_dir.join("server.log").display()
            )
        })?;
        self.started_here = true;
        Ok(())
    }

    /// Runs `postgres` under a small shell watchdog that stops it (and removes the data) once
    /// this process is gone, so test servers never outlive the test run.
    fn start_ephemeral(&mut self) -> anyhow::Result<()> {
        let script = r#"
"$1" -D "$2" -p "$3" >"$2/server.log" 2>&1 &
server=$!
trap 'kill -INT $server 2>/dev/null' TERM INT
while [ -d "/proc/$4" ] && kill -0 "$server" 2>/dev/null; do sleep 0.5; done
kill -INT "$server" 2>/dev/null
wait "$server"
rm -rf "$2"
"#;
        let mut shell = std::process::Command::new("sh");
        shell
            .arg("-c")
            .arg(script)
            .arg("guestloop-pg-watchdog")
            .arg(self.bin_dir.join("postgres"))
            .arg(&self.data_dir)
            .arg(self.port.to_string())
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(owner) = self.owner {
            std::os::unix::process::CommandExt::uid(&mut shell, owner.uid);
            std::os::unix::process::CommandExt::gid(&mut shell, owner.gid);
        }
        shell.spawn().context("cannot start postgres")?;
        self.started_here = true;
        Ok(())
    }

    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = sqlx::postgres::PgConnectOptions::new()
                .host("127.0.0.1")
                .port(self.port)
                .username("postgres")
                .database("postgres");
            match sqlx::ConnectOptions::connect(&attempt).await {
                Ok(connection) => {
                    let _ = sqlx::Connection::close(connection).await;
                    return Ok(());
                }
                Err(error) if tokio::time::Instant::now() >= deadline => {
                    let log = std::fs::read_to_string(self.data_dir.join("server.log"))
                        .unwrap_or_default();
                    anyhow::bail!("private PostgreSQL did not accept connections: {error}\n{log}");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// URL of the server's `postgres` database (trust authentication on loopback).
    pub fn url(&self) -> SecretString {
        self.url_for("postgres")
    }

    pub fn url_for(&self, database: &str) -> SecretString {
        SecretString::from(format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.port
        ))
    }

    /// Stops a managed server that this process started (fast shutdown: sessions are ended,
    /// committed data is safe).
    pub async fn stop(&self) -> anyhow::Result<()> {
        if self.lifetime != Lifetime::Managed || !self.started_here {
            return Ok(());
        }
        let mut stop = command(self.bin_dir.join("pg_ctl"), self.owner);
        stop.arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "-t", "8"]);
        run_checked(stop, "pg_ctl stop").await
    }
}
