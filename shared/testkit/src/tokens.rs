//! Minting tokens for tests.

use guestloop_kit::auth::{Claims, PropertyScope, Role, TokenIssuer};
use guestloop_kit::config::AuthSettings;
use secrecy::SecretString;

/// The HS256 secret of [`crate::test_settings`].
pub const TEST_SECRET: &str = "guestloop-test-secret-0123456789abcdef";
/// The chain every test token belongs to unless told otherwise.
pub const TEST_CHAIN: &str = "chain-test";

fn issuer() -> anyhow::Result<TokenIssuer> {
    let settings = AuthSettings {
        hs256_secret: Some(SecretString::from(TEST_SECRET.to_string())),
        ..AuthSettings::default()
    };
    TokenIssuer::from_settings(&settings).ok_or_else(|| anyhow::anyhow!("no issuer"))
}

/// Claims for `role` in the test chain with `props` scope.
pub fn test_claims(role: Role, props: PropertyScope) -> Claims {
    Claims::new(format!("test-{}", role.as_str()), role, TEST_CHAIN, props)
}

/// Builds a test token step by step.
#[derive(Debug, Clone)]
pub struct TokenBuilder {
    claims: Claims,
}

impl TokenBuilder {
    pub fn new(role: Role) -> Self {
        Self {
            claims: test_claims(role, PropertyScope::all()),
        }
    }

    pub fn scope(mut self, props: PropertyScope) -> Self {
        self.claims.props = props;
        self
    }

    pub fn properties(mut self, ids: &[&str]) -> Self {
        self.claims.props = PropertyScope::Listed(ids.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn chain(mut self, chain: &str) -> Self {
        self.claims.chain = chain.into();
        self
    }

    pub fn subject(mut self, subject: &str) -> Self {
        self.claims.sub = subject.into();
        self
    }

    pub fn guest(mut self, guest_id: &str) -> Self {
        self.claims.guest_id = Some(guest_id.into());
        self
    }

    pub fn department(mut self, department: &str) -> Self {
        self.claims.department = Some(department.into());
        self
    }

    /// A valid token (issuer, audience, lifetime filled in).
    pub fn mint(self) -> anyhow::Result<String> {
        issuer()?.mint(self.claims)
    }

    /// A valid token that expires `seconds` from now.
    pub fn mint_expiring_in(mut self, seconds: i64) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        self.claims.iss = "guestloop".into();
        self.claims.aud = "guestloop".into();
        self.claims.iat = now;
        self.claims.exp = now + seconds;
        issuer()?.sign(&self.claims)
    }

    /// A token that expired an hour ago.
    pub fn mint_expired(mut self) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        self.claims.iss = "guestloop".into();
        self.claims.aud = "guestloop".into();
        self.claims.iat = now - 7200;
        self.claims.exp = now - 3600;
        issuer()?.sign(&self.claims)
    }
}
