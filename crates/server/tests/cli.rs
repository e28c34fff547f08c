//! The binary as a newcomer uses it: first start, migrate, admin.

mod common;

use std::process::{Command, Stdio};

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

/// `switchyard` with the database at `db_url`, its stdout as given and
/// stderr captured; `log` is `SWITCHYARD_LOG` (None: the default filter).
fn admin_run(
    dir: &TempDir,
    db_url: &str,
    log: Option<&str>,
    stdout: Stdio,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(args)
        .env("SWITCHYARD_DATABASE_URL", db_url)
        .env("SWITCHYARD_DATA_DIR", &dir.0)
        .env("RUST_BACKTRACE", "1")
        .env_remove("SWITCHYARD_LOG")
        .stdout(stdout)
        .stderr(Stdio::piped());
    if let Some(filter) = log {
        cmd.env("SWITCHYARD_LOG", filter);
    }
    cmd.output().expect("run switchyard")
}

/// stdout is the command's output alone (logs, the database's notices
/// included, go to stderr), and a reader that went away ends the command
/// quietly: no panic, no backtrace.
async fn admin_output_is_clean_json(db_url: &str) {
    let dir = TempDir::new();
    let migrate = admin_run(&dir, db_url, None, Stdio::piped(), &["migrate"]);
    assert!(migrate.status.success(), "{migrate:?}");
    // Migrating again makes PostgreSQL send notices ("already exists, skipping").
    for log in [None, Some("info"), Some("debug")] {
        let out = admin_run(
            &dir,
            db_url,
            log,
            Stdio::piped(),
            &["admin", "create-org", "--name", "Piped"],
        );
        assert!(out.status.success(), "{log:?}: {out:?}");
        let org: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{log:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(org["name"], "Piped");
        let out = admin_run(&dir, db_url, log, Stdio::piped(), &["admin", "list-orgs"]);
        let orgs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{log:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert!(orgs.as_array().is_some_and(|a| !a.is_empty()), "{orgs}");
    }
    for args in [&["admin", "list-orgs"][..], &["migrate"][..]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = admin_run(&dir, db_url, Some("info"), writer.into(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{args:?} into a closed pipe: {:?}\n{stderr}",
            out.status
        );
    }
}

#[test]
fn admin_output_is_clean_json_on_sqlite() {
    let dir = TempDir::new();
    let url = format!("sqlite://{}", dir.0.join("s.db").display());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(admin_output_is_clean_json(&url));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_output_is_clean_json_on_postgres() {
    let Some(db) = common::PgDatabase::create().await else {
        return;
    };
    admin_output_is_clean_json(&db.url).await;
}

/// `switchyard serve` with default logging (no `SWITCHYARD_LOG`), stderr
/// into `log`; killed when dropped.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_logging_to(dir: &TempDir, log: &std::path::Path) -> (Served, String, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .env(
            "SWITCHYARD_DATABASE_URL",
            format!("sqlite://{}", dir.0.join("s.db").display()),
        )
        .env("SWITCHYARD_DATA_DIR", &dir.0)
        .env("SWITCHYARD_HTTP_ADDR", "127.0.0.1:0")
        .env("SWITCHYARD_SIP_ADDR", "127.0.0.1:0")
        .env("SWITCHYARD_SCHEDULER_INTERVAL_MS", "50")
        .env_remove("SWITCHYARD_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn switchyard");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut key = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(k) = line.strip_prefix("api_key = ") {
                key = k.trim().to_owned();
            }
            if let Some(rest) = line.strip_prefix("Switchyard listening on http://") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send((addr.to_owned(), key.clone()));
            }
        }
    });
    let (addr, key) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("server listening within 60 s");
    (Served(child), format!("http://{addr}"), key)
}

/// At INFO the log is Switchyard's own lines: no SIP message (the SIP
/// library's wire log is under `rsipstack`, at DEBUG), no colours into a
/// file, and one access-log line per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_our_lines_one_per_request_without_sip_messages_or_colours() {
    use common::sipp::{Sipp, Transport, scenario as sc, sipp_available};
    use std::time::Duration;
    if !sipp_available() {
        return;
    }
    let dir = TempDir::new();
    let log = dir.0.join("stderr.log");
    let (_server, base, key) = serve_logging_to(&dir, &log);
    let ring = sc::doc(
        "ring",
        &[
            sc::recv_invite(),
            sc::respond(180, "Ringing", "", false),
            sc::recv("CANCEL"),
            sc::ok_in_dialog(),
            sc::respond(487, "Request Terminated", "", false),
            sc::recv("ACK"),
        ]
        .concat(),
    );
    let peer = Sipp::uas("ring", &ring, Transport::Udp, 1);
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .header("X-API-Key", &key)
            .json(&body)
            .send()
    };
    let trunk: serde_json::Value = post(
        "/sip-trunks",
        serde_json::json!({"name": "sipp", "host": "127.0.0.1", "port": peer.port}),
    )
    .await
    .expect("trunk")
    .json()
    .await
    .expect("json");
    let r = post(
        "/phone-numbers",
        serde_json::json!({"number": "+15550001000", "sip_trunk_id": trunk["id"]}),
    )
    .await
    .expect("number");
    assert_eq!(r.status(), 201);
    let call: serde_json::Value = post(
        "/calls",
        serde_json::json!({"to_number": "+14155552671", "ring_timeout_seconds": 5}),
    )
    .await
    .expect("call")
    .json()
    .await
    .expect("json");
    let id = call["id"].as_str().expect("call id").to_owned();
    common::eventually(Duration::from_secs(30), || async {
        let c: serde_json::Value = http
            .get(format!("{base}/calls/{id}"))
            .header("X-API-Key", &key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (c["status"] == "NO_ANSWER").then_some(())
    })
    .await;
    peer.finish(Duration::from_secs(10)).await.assert_success();
    for probe in ["access-log-probe", "access-log-last"] {
        let r = http
            .get(format!("{base}/calls?page_size=1"))
            .header("X-API-Key", &key)
            .header("X-Request-Id", probe)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200);
    }
    let text = common::eventually(Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("request_id=access-log-last").then_some(text)
    })
    .await;
    assert!(!text.contains('\u{1b}'), "ANSI escapes in a file:\n{text}");
    for wire in ["SIP/2.0", "raw_message", "udp send", "udp received"] {
        assert!(
            !text.contains(wire),
            "a SIP message at INFO ({wire}):\n{text}"
        );
    }
    for ours in [
        "Switchyard is listening",
        "INVITE sent",
        "call not answered",
    ] {
        assert!(text.contains(ours), "our line {ours:?} at INFO:\n{text}");
    }
    let access: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("request_id=access-log-probe"))
        .collect();
    assert_eq!(access.len(), 1, "one line per request:\n{text}");
    for field in [
        "switchyard::access",
        "method=GET",
        "path=/calls",
        "status=200",
        "duration_ms=",
    ] {
        assert!(access[0].contains(field), "{field} in {}", access[0]);
    }
    assert!(!access[0].contains("page_size"), "no query: {}", access[0]);
    // Requests of the walk-through above were logged as well, one each.
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("switchyard::access") && l.contains("method=POST"))
            .count(),
        3,
        "{text}"
    );
}
