//! `switchyard bench api`: API throughput and latency, measured with wrk on
//! loopback against a server in this process, seeded with many calls. Each
//! figure is also given as ratios to two floors of the same server in the
//! same run: `/healthz` (HTTP only: no auth, no database) and `/readyz`
//! (one `SELECT 1` round trip through the pool: the database driver's floor).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use rand::seq::IndexedRandom;
use switchyard_domain::{CallDirection, CallStatus, timefmt};
use switchyard_service::Principal;
use switchyard_service::trunks::{CreatePhoneNumberRequest, CreateSipTrunkRequest};
use switchyard_store::NewCall;

use crate::app::RunningServer;
use crate::config::Config;

#[derive(Debug, Clone, clap::Args)]
pub struct ApiBenchArgs {
    /// Calls to seed before measuring.
    #[arg(long, default_value_t = 100_000)]
    pub calls: usize,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// `postgres://…` to measure PostgreSQL (a scratch database: calls are added to it);
    /// default: a new SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
}

/// One wrk run.
#[derive(Debug, Clone)]
struct WrkResult {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn parse_duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

fn parse_wrk(output: &str) -> anyhow::Result<WrkResult> {
    let mut result = WrkResult {
        requests_per_sec: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: 0,
    };
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => result.requests_per_sec = n.parse()?,
            ["50%", d] => result.p50_ms = parse_duration_ms(d).unwrap_or(f64::NAN),
            ["99%", d] => result.p99_ms = parse_duration_ms(d).unwrap_or(f64::NAN),
            ["Non-2xx", "or", "3xx", "responses:", n] => result.errors += n.parse::<u64>()?,
            ["Socket", "errors:", rest @ ..] => {
                result.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if result.requests_per_sec == 0.0 {
        anyhow::bail!("could not read wrk's output:\n{output}");
    }
    Ok(result)
}

/// Runs wrk for `args.duration` seconds after a 2-second warm-up run whose
/// figures are discarded (connections, caches and prepared statements).
fn run_wrk(args: &ApiBenchArgs, base: &str, script: Option<&Path>) -> anyhow::Result<WrkResult> {
    wrk_once(args, base, script, 2)?;
    wrk_once(args, base, script, args.duration)
}

fn wrk_once(
    args: &ApiBenchArgs,
    base: &str,
    script: Option<&Path>,
    seconds: u64,
) -> anyhow::Result<WrkResult> {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency");
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd
        .arg(base)
        .output()
        .map_err(|e| anyhow::anyhow!("running wrk (apt-get install wrk): {e}"))?;
    if !out.status.success() {
        anyhow::bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

fn lua_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Runs the API benchmark with `base`'s settings (pool size and the like),
/// on a scratch data directory and with rate limits out of the way.
pub async fn run_api(base: &Config, args: ApiBenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    let config = Config {
        database_url: args
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("bench.db").display())),
        http_addr: "127.0.0.1:0".into(),
        data_dir: dir.clone(),
        rate_limit_per_second: 1_000_000_000,
        rate_limit_burst: 1_000_000_000,
        call_create_per_second: 1_000_000_000,
        call_create_burst: 1_000_000_000,
        scheduler_interval_ms: 3_600_000,
        jwt_secret: None,
        sip_trunks: Vec::new(),
        // The API alone: created calls stay QUEUED, nothing is dialled.
        sip_enabled: false,
        ..base.clone()
    };
    let server = RunningServer::start(&config).await?;
    let result = measure(&args, &server, &dir).await;
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(args: &ApiBenchArgs, server: &RunningServer, dir: &Path) -> anyhow::Result<()> {
    let services = &server.services;
    let org = services
        .store
        .list_organizations()
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no organization"))?;
    let (_, key) = services
        .auth
        .create_api_key(org.id, "bench".into(), None, None, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let system = Principal::system(org.id);
    if services.store.list_phone_numbers(org.id).await?.is_empty() {
        let trunk = services
            .create_sip_trunk(
                &system,
                CreateSipTrunkRequest {
                    name: "bench".into(),
                    host: "127.0.0.1".into(),
                    port: Some(5060),
                    transport: None,
                    username: None,
                    password: None,
                    realm: None,
                    from_domain: None,
                    max_concurrent_calls: None,
                    inbound_allow: None,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        services
            .create_phone_number(
                &system,
                CreatePhoneNumberRequest {
                    number: "+15550009999".into(),
                    sip_trunk_id: trunk.id.to_string(),
                    is_default_outbound: Some(true),
                    inbound_agent: None,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }

    eprintln!("seeding {} calls…", args.calls);
    let now = timefmt::now_ms();
    let statuses = [
        CallStatus::Completed,
        CallStatus::Completed,
        CallStatus::NoAnswer,
        CallStatus::Busy,
        CallStatus::Failed,
    ];
    let calls: Vec<NewCall> = (0..args.calls)
        .map(|i| NewCall {
            organization_id: org.id,
            status: statuses[i % statuses.len()],
            // Spread over the last 30 days.
            call_time: now - (i as i64 * 2_592_000_000 / args.calls.max(1) as i64),
            call_direction: CallDirection::Outbound,
            to_number: Some(format!("+1415{:07}", i % 10_000_000)),
            from_number: Some("+15550009999".into()),
            call_type: Some("CHECK_CALL".into()),
            load_id: None,
            created_by_id: None,
            metadata: None,
            agent: None,
            record: true,
            ring_timeout_seconds: 30,
            max_duration_seconds: 1800,
            sip_trunk_id: None,
            claimed_by: None,
        })
        .collect();
    let ids = services.store.insert_calls_for_benchmark(&calls).await?;
    let sample: Vec<String> = ids
        .choose_multiple(&mut rand::rng(), 1000.min(ids.len()))
        .map(|id| id.to_string())
        .collect();

    let headers = format!(
        "wrk.headers[\"X-API-Key\"] = {}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
        lua_string(&key)
    );
    let get_one = dir.join("get_one.lua");
    std::fs::write(
        &get_one,
        format!(
            "{headers}ids = {{{}}}\nrequest = function()\n  return wrk.format(\"GET\", \"/api/v1/calls/\" .. ids[math.random(#ids)])\nend\n",
            sample
                .iter()
                .map(|s| lua_string(s))
                .collect::<Vec<_>>()
                .join(",")
        ),
    )?;
    let list = dir.join("list.lua");
    std::fs::write(
        &list,
        format!("{headers}wrk.path = \"/api/v1/calls?page_size=100\"\n"),
    )?;
    let create = dir.join("create.lua");
    std::fs::write(
        &create,
        format!(
            "{headers}wrk.method = \"POST\"\nwrk.path = \"/api/v1/calls\"\nwrk.body = {}\n",
            lua_string(r#"{"to_number":"+14155552671","call_type":"CHECK_CALL"}"#)
        ),
    )?;

    let base = format!("http://{}", server.addr);
    let floor_url = format!("{base}/healthz");
    let backend = format!("{:?}", services.store.backend());
    eprintln!("measuring /healthz (the HTTP floor)…");
    let floor = run_wrk(args, &floor_url, None)?;
    eprintln!("measuring /readyz (the database floor)…");
    let db_floor = run_wrk(args, &format!("{base}/readyz"), None)?;
    let mut rows = Vec::new();
    for (name, script) in [
        ("GET /calls/{id}", &get_one),
        ("GET /calls?page_size=100", &list),
        ("POST /calls", &create),
    ] {
        eprintln!("measuring {name}…");
        rows.push((name, run_wrk(args, &base, Some(script))?));
    }

    let mut table = String::new();
    writeln!(
        table,
        "Back-end: {backend}; {} calls seeded; wrk -t{} -c{} -d{}s on loopback.\n",
        args.calls, args.threads, args.connections, args.duration
    )?;
    writeln!(
        table,
        "| scenario | req/s | p50 ms | p99 ms | errors | ÷ /healthz | ÷ /readyz |"
    )?;
    writeln!(table, "|---|---:|---:|---:|---:|---:|---:|")?;
    let floors = [
        ("GET /healthz (HTTP floor)", &floor),
        ("GET /readyz (SELECT 1 floor)", &db_floor),
    ];
    for (name, r) in floors.into_iter().chain(rows.iter().map(|(n, r)| (*n, r))) {
        writeln!(
            table,
            "| {name} | {:.0} | {:.2} | {:.2} | {} | {:.2} | {:.2} |",
            r.requests_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            r.requests_per_sec / floor.requests_per_sec,
            r.requests_per_sec / db_floor.requests_per_sec
        )?;
    }
    println!("{table}");
    if rows.iter().any(|(_, r)| r.errors > 0) || floor.errors > 0 || db_floor.errors > 0 {
        anyhow::bail!("some requests failed during the benchmark");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let out = "Running 1s test\n  Latency Distribution\n     50%  610.00us\n     75%    1.02ms\n     99%    4.51ms\n  1000 requests in 1.00s\nRequests/sec:  31234.50\nNon-2xx or 3xx responses: 3\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.requests_per_sec, 31234.5);
        assert!((r.p50_ms - 0.61).abs() < 1e-9);
        assert_eq!(r.p99_ms, 4.51);
        assert_eq!(r.errors, 3);
        assert!(parse_wrk("garbage").is_err());
    }
}
