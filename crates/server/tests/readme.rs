//! The README's walk-through, run as pasted against a fresh server started
//! the way the README starts it (its own working directory, the default
//! `./data`), so that every command in it keeps working.
//!
//! The block runs under `set -euo pipefail` with `curl` failing on an HTTP
//! error and `jq` on a `null` answer, so a refused request or a missing
//! field stops it at that line; its list example must find the calls the
//! walk-through made.

mod common;

use std::path::Path;
use std::process::Command;

use common::TempDir;
use common::process::{Serve, serve_command, start};

/// The address the README's commands use; replaced by the test server's.
const README_ADDR: &str = "127.0.0.1:8080";

/// The first ```sh block after `heading` in the README.
fn shell_block_after(readme: &str, heading: &str) -> String {
    let from = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &readme[from..];
    let start = rest.find("```sh\n").expect("a sh block after the heading") + "```sh\n".len();
    let len = rest[start..].find("\n```").expect("the block ends");
    rest[start..start + len].to_owned()
}

/// `switchyard serve` in `dir` on the embedded defaults, with what the
/// README says its webhook step needs; returns it and its address.
fn start_server(dir: &Path) -> (Serve, String) {
    let mut cmd = serve_command();
    cmd.current_dir(dir)
        .env("SWITCHYARD_WEBHOOK_ALLOW_DESTINATIONS", "127.0.0.0/8");
    let server = start(cmd);
    let addr = server.base.trim_start_matches("http://").to_owned();
    (server, addr)
}

#[test]
fn the_walk_through_runs_as_pasted() {
    for tool in ["curl", "jq"] {
        if Command::new(tool).arg("--version").output().is_err() {
            assert!(!common::peers_required(), "{tool} is needed");
            eprintln!("skipping: {tool} is not installed");
            return;
        }
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let block = shell_block_after(&readme, "## A walk through the API");
    assert!(
        block.contains(README_ADDR),
        "the walk-through uses {README_ADDR}"
    );
    let list = block
        .lines()
        .find(|l| l.starts_with("curl -s \"$API/calls?"))
        .expect("the walk-through lists calls")
        .to_owned();

    let dir = TempDir::new();
    let (_server, addr) = start_server(&dir.0);
    let script = format!(
        "set -euo pipefail\n\
         curl() {{ command curl --fail-with-body --show-error \"$@\"; }}\n\
         jq() {{ command jq -e \"$@\"; }}\n\
         {block}\n\
         # The list example finds the walk-through's two calls.\n\
         {list} | jq '.data | length >= 2' >/dev/null\n",
        block = block.replace(README_ADDR, &addr),
        list = list.replace(README_ADDR, &addr),
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&dir.0)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "the walk-through stopped ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
