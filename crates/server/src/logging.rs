//! Where the logs go and what they show. Logs are written to stderr, always
//! (stdout carries only a command's output, so `switchyard admin … | jq`
//! works); colours only when stderr is a terminal (and `NO_COLOR` is not
//! set). Without `SWITCHYARD_LOG`, INFO shows Switchyard's own lines: the
//! SIP library's wire log (every message it sends and receives, under the
//! `rsipstack` target) and the database driver's notices (`sqlx`) show from
//! WARN only; `SWITCHYARD_LOG=info,rsipstack=debug` shows the SIP messages.
//! Each HTTP request makes one line under `switchyard::access`.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// The filter when `SWITCHYARD_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,rsipstack=warn,sqlx=warn";

/// Whether log lines get ANSI colours: only on a terminal, unless `NO_COLOR`.
pub fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the process's subscriber (`log_format` `text` or `json`).
pub fn init(config: &Config) {
    let filter = EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours());
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Writes a command's output and a newline to stdout. A closed pipe (the
/// reader went away, as with `| head`) ends the process quietly with
/// status 0; any other write error ends it with a message and status 1.
pub fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        let _ = writeln!(std::io::stderr(), "switchyard: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// A notice on stdout from the server (where it listens, the first-run
/// credentials); a closed stdout does not stop the server.
pub fn notice(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}
