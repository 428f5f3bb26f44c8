//! Minting and verifying JWTs.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;

use super::Claims;
use crate::config::AuthSettings;
use crate::error::ApiError;

/// Checks bearer tokens against the configured keys.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenVerifier {
    /// Builds a verifier from the settings; fails (naming the setting) when no key is usable.
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        if let Some(secret) = &settings.hs256_secret {
            keys.push((
                Algorithm::HS256,
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            ));
        }
        for path in &settings.public_key_files {
            keys.push(load_public_key(path)?);
        }
        if keys.is_empty() {
            anyhow::bail!(
                "setting `auth.hs256_secret` or `auth.public_key_files` is required: no key to verify tokens with"
            );
        }
        Ok(Self {
            keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        })
    }

    /// Verifies a raw JWT and returns its claims, or UNAUTHENTICATED saying why.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| ApiError::Unauthenticated(format!("malformed token: {e}")))?;
        let mut last_error = None;
        for (algorithm, key) in self.keys.iter().filter(|(alg, _)| *alg == header.alg) {
            let mut validation = Validation::new(*algorithm);
            validation.set_issuer(&[&self.issuer]);
            validation.set_audience(&[&self.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.leeway = 30;
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last_error = Some(e),
            }
        }
        Err(ApiError::Unauthenticated(match last_error {
            Some(e) => format!("invalid token: {e}"),
            None => format!("token algorithm {:?} is not accepted", header.alg),
        }))
    }
}

fn load_public_key(path: &Path) -> anyhow::Result<(Algorithm, DecodingKey)> {
    let pem = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "setting `auth.public_key_files`: cannot read {}: {e}",
            path.display()
        )
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((Algorithm::RS256, key));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        return Ok((Algorithm::EdDSA, key));
    }
    anyhow::bail!(
        "setting `auth.public_key_files`: {} is neither an RSA nor an Ed25519 public key in PEM",
        path.display()
    )
}

/// Mints HS256 tokens (development tokens and service tokens).
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    issuer: String,
    audience: String,
    ttl_seconds: i64,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenIssuer {
    /// An issuer when an HS256 secret is configured.
    pub fn from_settings(settings: &AuthSettings) -> Option<Self> {
        let secret = settings.hs256_secret.as_ref()?;
        Some(Self {
            key: EncodingKey::from_secret(secret.expose_secret().as_bytes()),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            ttl_seconds: i64::try_from(settings.token_ttl_seconds).unwrap_or(i64::MAX / 2),
        })
    }

    /// How long a minted token is valid, in seconds.
    pub fn ttl_seconds(&self) -> i64 {
        self.ttl_seconds
    }

    /// Fills issuer, audience and lifetime, then signs.
    pub fn mint(&self, claims: Claims) -> anyhow::Result<String> {
        self.mint_at(claims, chrono::Utc::now().timestamp())
    }

    /// [`TokenIssuer::mint`] as if the time were `now` (Unix seconds).
    pub fn mint_at(&self, mut claims: Claims, now: i64) -> anyhow::Result<String> {
        claims.iss = self.issuer.clone();
        claims.aud = self.audience.clone();
        claims.iat = now;
        claims.exp = now + self.ttl_seconds;
        self.sign(&claims)
    }

    /// Signs the claims exactly as given (tests use it for expired tokens).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.key,
        )?)
    }

    /// A token for service-to-service calls, scoped to every property of every chain it serves.
    pub fn service_token(&self, service: &str) -> anyhow::Result<String> {
        self.service_token_at(service, chrono::Utc::now().timestamp())
    }

    /// [`TokenIssuer::service_token`] as if the time were `now` (Unix seconds).
    pub fn service_token_at(&self, service: &str, now: i64) -> anyhow::Result<String> {
        self.mint_at(
            Claims::new(
                format!("service:{service}"),
                super::Role::Service,
                "*",
                super::PropertyScope::all(),
            ),
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PropertyScope, Role};
    use super::*;
    use secrecy::SecretString;

    fn settings(secret: &str) -> AuthSettings {
        AuthSettings {
            hs256_secret: Some(SecretString::from(secret.to_string())),
            ..AuthSettings::default()
        }
    }

    fn claims() -> Claims {
        Claims::new(
            "u1",
            Role::Agent,
            "c1",
            PropertyScope::Listed(vec!["p1".into()]),
        )
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn minted_token_verifies() -> anyhow::Result<()> {
        let s = settings(SECRET);
        let token = TokenIssuer::from_settings(&s)
            .expect("issuer")
            .mint(claims())?;
        let verified = TokenVerifier::from_settings(&s)?.verify(&token)?;
        assert_eq!(verified.sub, "u1");
        assert_eq!(verified.role, Role::Agent);
        Ok(())
    }

    #[test]
    fn wrong_secret_expired_and_alg_none_are_refused() -> anyhow::Result<()> {
        let s = settings(SECRET);
        let verifier = TokenVerifier::from_settings(&s)?;
        let other = TokenIssuer::from_settings(&settings("ffffffffffffffffffffffffffffffff"))
            .expect("issuer");
        assert!(verifier.verify(&other.mint(claims())?).is_err());

        let issuer = TokenIssuer::from_settings(&s).expect("issuer");
        let mut expired = claims();
        expired.iss = "guestloop".into();
        expired.aud = "guestloop".into();
        expired.exp = chrono::Utc::now().timestamp() - 3600;
        assert!(verifier.verify(&issuer.sign(&expired)?).is_err());

        // {"alg":"none","typ":"JWT"} . otherwise valid payload . (empty signature)
        let mut fresh = expired.clone();
        fresh.exp = chrono::Utc::now().timestamp() + 3600;
        assert!(verifier.verify(&issuer.sign(&fresh)?).is_ok());
        use base64::Engine;
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let unsigned = format!(
            "{}.{}.",
            encode(br#"{"alg":"none","typ":"JWT"}"#),
            encode(serde_json::to_string(&fresh)?.as_bytes())
        );
        assert!(verifier.verify(&unsigned).is_err());
        assert!(verifier.verify("not-a-token").is_err());
        Ok(())
    }
}
