//! The development signing secret: when no key is configured, `guestloop up` and
//! `guestloop token` share a random HS256 secret kept in the data folder (mode 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use guestloop_kit::config::Settings;
use rand::distr::{Alphanumeric, SampleString};
use secrecy::SecretString;

const FILE_NAME: &str = "dev-jwt-secret";

/// Fills `auth.hs256_secret` from the data folder (creating it) when no key is configured.
pub fn ensure(settings: &mut Settings) -> anyhow::Result<()> {
    if settings.auth.hs256_secret.is_some() || !settings.auth.public_key_files.is_empty() {
        return Ok(());
    }
    let path = settings.data_dir.join(FILE_NAME);
    let secret = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().to_string(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&settings.data_dir)?;
            let secret = Alphanumeric.sample_string(&mut rand::rng(), 48);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(secret.as_bytes())?;
            secret
        }
        Err(error) => return Err(anyhow::anyhow!("cannot read {}: {error}", path.display())),
    };
    if secret.len() < 32 {
        anyhow::bail!(
            "{} holds a secret shorter than 32 bytes; delete it to make a new one",
            path.display()
        );
    }
    settings.auth.hs256_secret = Some(SecretString::from(secret));
    Ok(())
}
