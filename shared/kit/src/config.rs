//! Layered configuration: built-in defaults → optional TOML file → environment.
//!
//! Environment variables use the `GUESTLOOP_` prefix with `__` between levels
//! (`GUESTLOOP_SERVER__REQUEST_TIMEOUT_MS=5000`); the conventional `DATABASE_URL` and
//! `OTEL_EXPORTER_OTLP_ENDPOINT` are honoured as they are. Tests build [`Settings`] directly.
//! Secrets are [`SecretString`]s and never appear in `Debug` output or logs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The four backend services and the gateway, by their short names.
pub const SERVICE_NAMES: [&str; 5] = ["complaints", "crm", "facilities", "audit", "gateway"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("setting `{setting}` is invalid: {reason}")]
    Invalid { setting: String, reason: String },
}

fn invalid(setting: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_string(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Default database for every service (`DATABASE_URL`). Unset: `guestloop up` starts a private
    /// PostgreSQL.
    pub database_url: Option<SecretString>,
    /// Per-service database overrides, e.g. `GUESTLOOP_DATABASE_URLS__CRM`.
    pub database_urls: BTreeMap<String, SecretString>,
    /// Where `guestloop up` keeps the private PostgreSQL data and the development signing secret.
    pub data_dir: PathBuf,
    /// Port of the private PostgreSQL started by `guestloop up`.
    pub embedded_postgres_port: u16,
    /// Address the servers bind to.
    pub listen_host: IpAddr,
    pub ports: Ports,
    /// Where each service reaches the others; unset entries default to `http://127.0.0.1:<port>`.
    pub endpoints: BTreeMap<String, String>,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub telemetry: TelemetrySettings,
    pub scorecard: ScorecardSettings,
    /// Load the demo chain at start-up (`guestloop up --demo`).
    pub demo: bool,
    /// Properties the operator assigns to chains: chain id → property ids. Every service
    /// registers them at start-up (`kit::tenancy`), moving a property another chain's write
    /// registered first; no other chain's caller reaches them from the first request on.
    /// Properties not listed are registered by the first write that names them.
    pub chains: BTreeMap<String, Vec<String>>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            database_urls: BTreeMap::new(),
            data_dir: PathBuf::from(".guestloop"),
            embedded_postgres_port: 54329,
            listen_host: IpAddr::from([127, 0, 0, 1]),
            ports: Ports::default(),
            endpoints: BTreeMap::new(),
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            auth: AuthSettings::default(),
            telemetry: TelemetrySettings::default(),
            scorecard: ScorecardSettings::default(),
            demo: false,
            chains: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ports {
    pub gateway: u16,
    pub gateway_http: u16,
    pub complaints: u16,
    pub crm: u16,
    pub facilities: u16,
    pub audit: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            gateway: 50051,
            gateway_http: 8080,
            complaints: 50052,
            crm: 50053,
            facilities: 50054,
            audit: 50055,
        }
    }
}

impl Ports {
    /// The gRPC port of a service by short name.
    pub fn grpc(&self, service: &str) -> Option<u16> {
        match service {
            "gateway" => Some(self.gateway),
            "complaints" => Some(self.complaints),
            "crm" => Some(self.crm),
            "facilities" => Some(self.facilities),
            "audit" => Some(self.audit),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Upper bound for one unary call, in milliseconds (clients may ask for less with grpc-timeout).
    pub request_timeout_ms: u64,
    /// Calls served at once per server; beyond this new calls are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent_requests: usize,
    /// Largest accepted request message, in bytes.
    pub max_message_bytes: usize,
    /// How long shutdown waits for in-flight calls before closing connections, in milliseconds.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            request_timeout_ms: 10_000,
            max_concurrent_requests: 512,
            max_message_bytes: 4 * 1024 * 1024,
            shutdown_grace_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    /// How long a call waits for a pooled connection before failing with UNAVAILABLE.
    pub acquire_timeout_ms: u64,
    /// Server-side limit for any one statement.
    pub statement_timeout_ms: u64,
    /// How long start-up keeps retrying an unreachable database before giving up.
    pub startup_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_ms: 3_000,
            statement_timeout_ms: 15_000,
            startup_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Shared HS256 secret (local use). At least 32 bytes.
    pub hs256_secret: Option<SecretString>,
    /// PEM public keys (RSA or Ed25519) accepted for RS256/EdDSA tokens (production).
    pub public_key_files: Vec<PathBuf>,
    /// Token sent by this process when calling other services, when it cannot mint its own
    /// (no HS256 secret configured).
    pub service_token: Option<SecretString>,
    pub issuer: String,
    pub audience: String,
    /// Lifetime of tokens minted by `guestloop token` and of service tokens.
    pub token_ttl_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            public_key_files: Vec::new(),
            service_token: None,
            issuer: "guestloop".into(),
            audience: "guestloop".into(),
            token_ttl_seconds: 8 * 3600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// `tracing` filter directives; `RUST_LOG` wins when set.
    pub log_filter: String,
    /// OTLP/gRPC collector endpoint; also read from `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Human,
            log_filter: "info,sqlx=warn,h2=warn,tower=warn".into(),
            otlp_endpoint: None,
        }
    }
}

/// The longest a scorecard may reuse CRM's loyalty summary: beyond an hour it is no longer a
/// current figure.
pub const MAX_LOYALTY_AGE_SECONDS: u64 = 3_600;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScorecardSettings {
    /// How long the gateway reuses CRM's loyalty summary for scorecards of the same caller role,
    /// chain, properties and period window, in seconds (0: ask CRM every time; at most 3600).
    pub loyalty_max_age_seconds: u64,
}

impl Default for ScorecardSettings {
    fn default() -> Self {
        Self {
            loyalty_max_age_seconds: 60,
        }
    }
}

/// `GUESTLOOP_` variables that are not settings: the CLI's `--config` and `--token`, and the
/// browser the dashboard test drives. Without this list they would be refused as unknown
/// settings.
const NOT_SETTINGS: &[&str] = &["config", "token", "chromium"];

impl Settings {
    /// Loads defaults, then `file` when given, then the environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            .merge(Env::prefixed("GUESTLOOP_").ignore(NOT_SETTINGS).split("__"))
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database_url".into()),
            )
            .merge(
                Env::raw()
                    .only(&["OTEL_EXPORTER_OTLP_ENDPOINT"])
                    .map(|_| "telemetry.otlp_endpoint".into()),
            );
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the values that types alone cannot; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, url) in self
            .database_url
            .iter()
            .map(|u| ("database_url".to_string(), u))
            .chain(
                self.database_urls
                    .iter()
                    .map(|(k, u)| (format!("database_urls.{k}"), u)),
            )
        {
            let text = url.expose_secret();
            if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
                return Err(invalid(&name, "must be a postgres:// or postgresql:// URL"));
            }
        }
        for key in self.database_urls.keys().chain(self.endpoints.keys()) {
            if !SERVICE_NAMES.contains(&key.as_str()) {
                return Err(invalid(
                    key,
                    format!("unknown service name; expected one of {SERVICE_NAMES:?}"),
                ));
            }
        }
        let mut assigned: BTreeMap<&str, &str> = BTreeMap::new();
        for (chain, properties) in &self.chains {
            if chain.trim().is_empty() || chain == "*" {
                return Err(invalid(
                    &format!("chains.{chain}"),
                    "a chain id must be named (not empty, not \"*\")",
                ));
            }
            for property in properties {
                if property.trim().is_empty() {
                    return Err(invalid(
                        &format!("chains.{chain}"),
                        "property ids must not be empty",
                    ));
                }
                if let Some(other) = assigned.insert(property, chain) {
                    if other != chain {
                        return Err(invalid(
                            &format!("chains.{chain}"),
                            format!("property {property} is assigned to chain {other} too"),
                        ));
                    }
                }
            }
        }
        if let Some(secret) = &self.auth.hs256_secret {
            if secret.expose_secret().len() < 32 {
                return Err(invalid(
                    "auth.hs256_secret",
                    "must be at least 32 bytes long",
                ));
            }
        }
        for path in &self.auth.public_key_files {
            if !path.exists() {
                return Err(invalid(
                    "auth.public_key_files",
                    format!("{} does not exist", path.display()),
                ));
            }
        }
        let positive = [
            ("server.request_timeout_ms", self.server.request_timeout_ms),
            (
                "server.max_concurrent_requests",
                self.server.max_concurrent_requests as u64,
            ),
            (
                "server.max_message_bytes",
                self.server.max_message_bytes as u64,
            ),
            (
                "database.max_connections",
                u64::from(self.database.max_connections),
            ),
            (
                "database.acquire_timeout_ms",
                self.database.acquire_timeout_ms,
            ),
            (
                "database.statement_timeout_ms",
                self.database.statement_timeout_ms,
            ),
            ("auth.token_ttl_seconds", self.auth.token_ttl_seconds),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(invalid(name, "must be greater than zero"));
            }
        }
        if self.scorecard.loyalty_max_age_seconds > MAX_LOYALTY_AGE_SECONDS {
            return Err(invalid(
                "scorecard.loyalty_max_age_seconds",
                format!("must be at most {MAX_LOYALTY_AGE_SECONDS}"),
            ));
        }
        let ports = [
            self.ports.gateway,
            self.ports.gateway_http,
            self.ports.complaints,
            self.ports.crm,
            self.ports.facilities,
            self.ports.audit,
        ];
        let mut nonzero: Vec<u16> = ports.iter().copied().filter(|p| *p != 0).collect();
        nonzero.sort_unstable();
        if nonzero.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid(
                "ports",
                "two services are configured on the same port",
            ));
        }
        Ok(())
    }

    /// The database URL a service should use, if any is configured.
    pub fn database_url_for(&self, service: &str) -> Option<&SecretString> {
        self.database_urls
            .get(service)
            .or(self.database_url.as_ref())
    }

    /// The URL other services use to reach `service`.
    pub fn endpoint_for(&self, service: &str) -> String {
        if let Some(endpoint) = self.endpoints.get(service) {
            return endpoint.clone();
        }
        let port = self.ports.grpc(service).unwrap_or(0);
        format!("http://127.0.0.1:{port}")
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults validate");
    }

    #[test]
    fn short_secret_is_rejected_with_the_setting_named() {
        let mut settings = Settings::default();
        settings.auth.hs256_secret = Some(SecretString::from("short"));
        let error = settings.validate().expect_err("short secret rejected");
        assert!(error.to_string().contains("auth.hs256_secret"), "{error}");
    }

    #[test]
    fn duplicate_ports_are_rejected() {
        let mut settings = Settings::default();
        settings.ports.crm = settings.ports.complaints;
        let error = settings.validate().expect_err("duplicate port rejected");
        assert!(error.to_string().contains("ports"), "{error}");
    }

    #[test]
    fn loyalty_age_over_an_hour_is_rejected() {
        let mut settings = Settings::default();
        settings.scorecard.loyalty_max_age_seconds = MAX_LOYALTY_AGE_SECONDS;
        settings.validate().expect("an hour is allowed");
        settings.scorecard.loyalty_max_age_seconds = MAX_LOYALTY_AGE_SECONDS + 1;
        let error = settings.validate().expect_err("over an hour rejected");
        assert!(
            error
                .to_string()
                .contains("scorecard.loyalty_max_age_seconds"),
            "{error}"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let settings = Settings {
            database_url: Some(SecretString::from("postgres://u:hunter2@h/db")),
            ..Settings::default()
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn file_then_environment_layering() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "g.toml",
                "[server]\nrequest_timeout_ms = 1234\nmax_concurrent_requests = 7\n",
            )?;
            jail.set_env("GUESTLOOP_SERVER__MAX_CONCURRENT_REQUESTS", "9");
            jail.set_env("DATABASE_URL", "postgres://localhost/x");
            let settings = Settings::load(Some(Path::new("g.toml")))
                .map_err(|e| figment::Error::from(e.to_string()))?;
            assert_eq!(settings.server.request_timeout_ms, 1234);
            assert_eq!(settings.server.max_concurrent_requests, 9);
            assert!(settings.database_url.is_some());
            Ok(())
        });
    }

    #[test]
    fn chains_come_from_the_file_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("g.toml", "[chains]\nnordic = [\"oslo\", \"bergen\"]\n")?;
            jail.set_env("GUESTLOOP_CHAINS__IBERIA", "[\"lisbon\"]");
            let settings = Settings::load(Some(Path::new("g.toml")))
                .map_err(|e| figment::Error::from(e.to_string()))?;
            assert_eq!(
                settings.chains.get("nordic"),
                Some(&vec!["oslo".to_string(), "bergen".to_string()])
            );
            assert_eq!(
                settings.chains.get("iberia"),
                Some(&vec!["lisbon".to_string()])
            );
            Ok(())
        });
    }

    #[test]
    fn a_property_of_two_chains_or_an_unnamed_chain_is_refused() {
        let mut settings = Settings::default();
        settings.chains.insert("a".into(), vec!["p1".into()]);
        settings
            .chains
            .insert("b".into(), vec!["p2".into(), "p1".into()]);
        let error = settings.validate().expect_err("p1 in two chains");
        assert!(error.to_string().contains("property p1"), "{error}");
        let mut settings = Settings::default();
        settings.chains.insert("*".into(), vec!["p1".into()]);
        let error = settings.validate().expect_err("every chain's");
        assert!(error.to_string().contains("chains.*"), "{error}");
        let mut settings = Settings::default();
        settings.chains.insert("a".into(), vec![" ".into()]);
        assert!(settings.validate().is_err(), "an empty property id");
    }

    #[test]
    fn cli_variables_are_not_settings() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GUESTLOOP_CONFIG", "/etc/guestloop.toml");
            jail.set_env("GUESTLOOP_TOKEN", "abc");
            jail.set_env("GUESTLOOP_CHROMIUM", "/usr/bin/chromium");
            jail.set_env("GUESTLOOP_SERVER__REQUEST_TIMEOUT_MS", "1234");
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.server.request_timeout_ms, 1234);
            Ok(())
        });
    }

    #[test]
    fn unknown_setting_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GUESTLOOP_SERVER__REQUEST_TIMOUT_MS", "5");
            let error = Settings::load(None).expect_err("typo rejected");
            assert!(error.to_string().contains("request_timout_ms"), "{error}");
            Ok(())
        });
    }
}
