//! `switchyard serve` as a child process, started as a user starts it, for
//! the tests that need a real process: a restart, a kill, two servers on one
//! database, what the binary leaves on disk.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `switchyard serve`, killed (SIGKILL, as a crash) when dropped.
pub struct Serve {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// The API key a first start prints; `None` on a later start.
    pub api_key: Option<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary's `serve` on loopback ports of the system's choosing, logging
/// warnings only; callers add their settings.
pub fn serve_command() -> Command {
    with_defaults(Command::new(env!("CARGO_BIN_EXE_switchyard")))
}

/// [`serve_command`] run through `sh` under `umask` (as a login shell has
/// one), for what the server leaves on disk.
pub fn serve_command_under_umask(umask: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_switchyard"));
    with_defaults(cmd)
}

fn with_defaults(mut cmd: Command) -> Command {
    cmd.arg("serve")
        .env("SWITCHYARD_HTTP_ADDR", "127.0.0.1:0")
        .env("SWITCHYARD_SIP_ADDR", "127.0.0.1:0")
        .env("SWITCHYARD_LOG", "warn");
    cmd
}

/// Spawns `cmd` (a `switchyard serve`, possibly behind a shell) and waits
/// until it says where it listens, reading the API key it prints first.
pub fn start(mut cmd: Command) -> Serve {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn switchyard");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut key = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(k) = line.strip_prefix("api_key = ") {
                key = Some(k.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("Switchyard listening on http://") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send((addr.to_owned(), key.clone()));
            }
        }
    });
    let (addr, api_key) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server listening within 60 s");
    Serve {
        child,
        base: format!("http://{addr}"),
        api_key,
    }
}
