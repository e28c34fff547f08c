//! The binary as a newcomer uses it: first start, migrate, admin.

mod common;

use std::process::Command;

use common::TempDir;

fn switchyard(dir: &TempDir, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env(
            "SWITCHYARD_DATABASE_URL",
            format!("sqlite://{}", dir.0.join("s.db").display()),
        )
        .env("SWITCHYARD_DATA_DIR", &dir.0)
        .env("SWITCHYARD_LOG", "warn")
        .output()
        .expect("run switchyard");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn json_of(out: &str) -> serde_json::Value {
    let start = out.find(['{', '[']).expect("json in output");
    let end = out.rfind(['}', ']']).expect("json end");
    serde_json::from_str(&out[start..=end]).expect("json")
}

#[test]
fn migrate_and_admin_commands() {
    let dir = TempDir::new();
    let (ok, out) = switchyard(&dir, &["migrate"]);
    assert!(ok, "{out}");
    let (ok, out) = switchyard(&dir, &["admin", "create-org", "--name", "Acme Freight"]);
    assert!(ok, "{out}");
    let org = json_of(&out)["id"].as_str().unwrap().to_owned();
    assert!(org.starts_with("org_"));
    let (ok, out) = switchyard(
        &dir,
        &[
            "admin",
            "create-user",
            "--org",
            &org,
            "--email",
            "ops@acme.test",
            "--password",
            "longenough",
            "--role",
            "ADMIN",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(json_of(&out)["role"], "ADMIN");
    let (ok, out) = switchyard(
        &dir,
        &[
            "admin",
            "create-user",
            "--org",
            &org,
            "--email",
            "x@acme.test",
            "--password",
            "short",
        ],
    );
    assert!(!ok && out.contains("password"), "{out}");
    let (ok, out) = switchyard(
        &dir,
        &[
            "admin",
            "create-user",
            "--org",
            &org,
            "--email",
            "y@acme.test",
            "--password",
            "longenough",
            "--role",
            "KING",
        ],
    );
    assert!(!ok && out.contains("--role"), "{out}");
    let (ok, out) = switchyard(
        &dir,
        &["admin", "create-api-key", "--org", &org, "--name", "tms"],
    );
    assert!(ok, "{out}");
    let key = json_of(&out)["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sy_live_"));
    let (ok, out) = switchyard(&dir, &["admin", "list-orgs"]);
    assert!(ok && out.contains("Acme Freight"), "{out}");
    let (ok, out) = switchyard(&dir, &["admin", "list-users", "--org", &org]);
    assert!(ok && out.contains("ops@acme.test"), "{out}");
    let (ok, out) = switchyard(&dir, &["admin", "list-api-keys", "--org", &org]);
    assert!(
        ok && out.contains("\"tms\"") && !out.contains(&key),
        "keys are never listed: {out}"
    );
    let (ok, out) = switchyard(
        &dir,
        &[
            "admin",
            "list-users",
            "--org",
            "load_550e8400-e29b-41d4-a716-446655440000",
        ],
    );
    assert!(!ok && out.contains("--org"), "{out}");
    let retention = |days: &str| {
        switchyard(
            &dir,
            &[
                "admin",
                "set-recording-retention",
                "--org",
                &org,
                "--days",
                days,
            ],
        )
    };
    let (ok, out) = retention("30");
    assert!(ok, "{out}");
    assert_eq!(json_of(&out)["recording_retention_days"], 30);
    let (ok, out) = retention("default");
    assert!(ok, "{out}");
    assert_eq!(
        json_of(&out)["recording_retention_days"],
        serde_json::Value::Null
    );
    assert_eq!(json_of(&out)["effective_days"], 90);
    let (ok, out) = retention("-1");
    assert!(!ok && out.contains("--days"), "{out}");
}

#[test]
fn bad_recording_settings_are_refused_with_a_clear_message() {
    let dir = TempDir::new();
    let file = dir.0.join("switchyard.toml");
    for (toml, says) in [
        ("recording_storage = \"s3\"\n", "s3_bucket"),
        ("recording_storage = \"ftp\"\n", "local or s3"),
        (
            "recording_url_mode = \"presigned\"\n",
            "recording_storage = \"s3\"",
        ),
        (
            "recording_url_ttl_seconds = 5\n",
            "recording_url_ttl_seconds",
        ),
        ("public_url = \"calls.example.com\"\n", "public_url"),
        ("recording_url_secret = \"short\"\n", "recording_url_secret"),
    ] {
        std::fs::write(&file, toml).unwrap();
        let (ok, out) = switchyard(&dir, &["--config", file.to_str().unwrap(), "serve"]);
        assert!(!ok && out.contains(says), "{toml}: {out}");
    }
}

#[test]
fn a_bad_configuration_is_refused_with_a_clear_message() {
    let dir = TempDir::new();
    let file = dir.0.join("switchyard.toml");
    std::fs::write(&file, "htp_addr = \"127.0.0.1:1\"\n").unwrap();
    let (ok, out) = switchyard(&dir, &["--config", file.to_str().unwrap(), "migrate"]);
    assert!(!ok && out.contains("htp_addr"), "{out}");
    std::fs::write(&file, "media_threads = 0\n").unwrap();
    let (ok, out) = switchyard(&dir, &["--config", file.to_str().unwrap(), "serve"]);
    assert!(!ok && out.contains("media_threads"), "{out}");
    let (ok, out) = switchyard(
        &dir,
        &["--config", "/nonexistent/switchyard.toml", "migrate"],
    );
    assert!(!ok && out.contains("does not exist"), "{out}");
}

#[tokio::test]
async fn first_start_writes_private_credentials_once() {
    let dir = TempDir::new();
    let config = common::base_config(&dir.0);
    let server = switchyard::app::RunningServer::start(&config)
        .await
        .unwrap();
    let initial = server
        .initial
        .clone()
        .expect("first start creates credentials");
    let file = config
        .data_dir
        .join(switchyard::bootstrap::CREDENTIALS_FILE);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&initial.api_key) && text.contains(&initial.password));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let orgs = server.store.list_organizations().await.unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(
        (orgs[0].id, orgs[0].name.as_str()),
        (initial.organization_id, "Default")
    );
    let r = reqwest::Client::new()
        .get(format!("http://{}/calls", server.addr))
        .header("X-API-Key", &initial.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    server.stop().await;
    // A restart on the same database creates nothing new.
    let again = switchyard::app::RunningServer::start(&config)
        .await
        .unwrap();
    assert!(again.initial.is_none());
    assert_eq!(again.store.list_organizations().await.unwrap().len(), 1);
    again.stop().await;
}

#[tokio::test]
async fn one_server_per_sqlite_file() {
    let dir = TempDir::new();
    let config = common::base_config(&dir.0);
    let first = switchyard::app::RunningServer::start(&config)
        .await
        .unwrap();
    let err = switchyard::app::RunningServer::start(&config)
        .await
        .err()
        .expect("a second server on the same SQLite file is refused");
    assert!(
        err.to_string().contains("another Switchyard server"),
        "{err}"
    );
    // Tools beside the server still work on its database.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["admin", "list-orgs"])
        .env("SWITCHYARD_DATABASE_URL", &config.database_url)
        .env("SWITCHYARD_DATA_DIR", &dir.0)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Default"),
        "{out:?}"
    );
    first.stop().await;
    let again = switchyard::app::RunningServer::start(&config)
        .await
        .expect("the file is free again after a stop");
    again.stop().await;
}
