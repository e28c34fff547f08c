//! First run: an empty database gets organization "Default", an OWNER and
//! an API key, printed once and written to a 0600 file. Also the JWT secret
//! and trunks seeded from the configuration file.

use std::io::Write;
use std::path::Path;

use rand::RngCore;
use switchyard_domain::Role;
use switchyard_domain::id::OrganizationId;
use switchyard_service::trunks::{CreatePhoneNumberRequest, CreateSipTrunkRequest};
use switchyard_service::{Principal, Services};

use crate::config::Config;

pub const OWNER_EMAIL: &str = "admin@localhost.localdomain";
pub const CREDENTIALS_FILE: &str = "initial-credentials.txt";
const JWT_SECRET_FILE: &str = "jwt.secret";
const RECORDING_URL_SECRET_FILE: &str = "recording-url.secret";
pub const SECRETS_KEY_FILE: &str = "secrets.key";

#[derive(Debug, Clone)]
pub struct InitialCredentials {
    pub organization_id: OrganizationId,
    pub email: String,
    pub password: String,
    pub api_key: String,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Writes `contents` to a new file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// The configured secret, or one generated once into the data directory.
pub fn jwt_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    secret(
        config,
        config.jwt_secret.as_deref(),
        "jwt_secret",
        JWT_SECRET_FILE,
    )
}

/// The key of recordings' signed URLs: `recording_url_secret`, or one
/// generated into `data_dir` at first start.
pub fn recording_url_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    secret(
        config,
        config.recording_url_secret.as_deref(),
        "recording_url_secret",
        RECORDING_URL_SECRET_FILE,
    )
}

/// The keys that seal trunk passwords and webhook secrets in the database:
/// `secrets_key`, or one generated into `data_dir/secrets.key` at first
/// start, plus `secrets_key_previous` (keys being rotated out, which still
/// open what they sealed until the start's reseal has rewritten it).
pub fn secrets_keys(config: &Config) -> anyhow::Result<switchyard_store::SecretKeys> {
    let current = secret(
        config,
        config.secrets_key.as_deref(),
        "secrets_key",
        SECRETS_KEY_FILE,
    )?;
    if let Some(short) = config.secrets_key_previous.iter().find(|k| k.len() < 32) {
        anyhow::bail!(
            "configuration: every secrets_key_previous must be at least 32 characters (one has {})",
            short.len()
        );
    }
    let previous: Vec<&[u8]> = config
        .secrets_key_previous
        .iter()
        .map(|k| k.as_bytes())
        .collect();
    Ok(switchyard_store::SecretKeys::new(&current, &previous))
}

/// A configured secret (at least 32 characters), or the one in `file`
/// under `data_dir`, made there (readable only by us) when missing.
fn secret(
    config: &Config,
    configured: Option<&str>,
    key: &str,
    file: &str,
) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = configured {
        if s.len() < 32 {
            anyhow::bail!("configuration: {key} must be at least 32 characters");
        }
        return Ok(s.as_bytes().to_vec());
    }
    let path = config.data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => Ok(s.trim().as_bytes().to_vec()),
        _ => {
            let secret = random_hex(32);
            write_private(&path, &secret)?;
            Ok(secret.into_bytes())
        }
    }
}

/// On an empty database, creates the Default organization, its OWNER and an
/// API key, prints them and writes them to `data_dir/initial-credentials.txt`.
pub async fn first_run(
    services: &Services,
    config: &Config,
) -> anyhow::Result<Option<InitialCredentials>> {
    if services.store.count_organizations().await? > 0 {
        return Ok(None);
    }
    let org = services.store.create_organization("Default").await?;
    let password = random_hex(12);
    let user = services
        .auth
        .create_user(OWNER_EMAIL, Some("Owner".into()), &password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    services
        .store
        .add_membership(org.id, user.id, Role::Owner)
        .await?;
    let (_, api_key) = services
        .auth
        .create_api_key(
            org.id,
            "initial".into(),
            Some("Created on first start".into()),
            None,
            Some(user.id),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let creds = InitialCredentials {
        organization_id: org.id,
        email: OWNER_EMAIL.into(),
        password,
        api_key,
    };
    let text = format!(
        "organization_id = {}\nemail = {}\npassword = {}\napi_key = {}\n",
        creds.organization_id, creds.email, creds.password, creds.api_key
    );
    let path = config.data_dir.join(CREDENTIALS_FILE);
    write_private(&path, &text)?;
    crate::logging::notice(&format!(
        "\nFirst start: created organization \"Default\" with an OWNER and an API key.\n\
         These are shown once (also saved, readable only by you, in {}):\n\n{text}",
        path.display()
    ));
    Ok(Some(creds))
}

/// Creates the trunks and numbers of `[[sip_trunks]]` in the oldest
/// organization, skipping those that exist already.
pub async fn seed_trunks(services: &Services, config: &Config) -> anyhow::Result<()> {
    if config.sip_trunks.is_empty() {
        return Ok(());
    }
    let Some(org) = services
        .store
        .list_organizations()
        .await?
        .into_iter()
        .next()
    else {
        return Ok(());
    };
    let system = Principal::system(org.id);
    let existing_numbers: Vec<String> = services
        .store
        .list_phone_numbers(org.id)
        .await?
        .into_iter()
        .map(|n| n.number)
        .collect();
    for seed in &config.sip_trunks {
        let trunk = match services
            .store
            .find_sip_trunk_by_name(org.id, &seed.name)
            .await?
        {
            Some(t) => t,
            None => services
                .create_sip_trunk(
                    &system,
                    CreateSipTrunkRequest {
                        name: seed.name.clone(),
                        host: seed.host.clone(),
                        port: seed.port,
                        transport: seed.transport.clone(),
                        username: seed.username.clone(),
                        password: seed.password.clone(),
                        realm: seed.realm.clone(),
                        from_domain: seed.from_domain.clone(),
                        max_concurrent_calls: seed.max_concurrent_calls,
                        inbound_allow: Some(seed.inbound_allow.clone()),
                    },
                )
                .await
                .map_err(|e| {
                    anyhow::anyhow!("sip_trunks {:?}: {} ({:?})", seed.name, e.message, e.param)
                })?,
        };
        for number in &seed.numbers {
            if existing_numbers.contains(number) {
                continue;
            }
            services
                .create_phone_number(
                    &system,
                    CreatePhoneNumberRequest {
                        number: number.clone(),
                        sip_trunk_id: trunk.id.to_string(),
                        is_default_outbound: None,
                        inbound_agent: None,
                    },
                )
                .await
                .map_err(|e| {
                    anyhow::anyhow!("sip_trunks {:?} number {number}: {}", seed.name, e.message)
                })?;
        }
    }
    Ok(())
}
