//! A real S3 API on loopback: moto's server mode (PyPI `moto[server]`, in
//! the `.venv` that `scripts/install-test-deps.sh` makes).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::peers_required;

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    /// `None` (skip) when moto is not installed and peers are not required.
    pub fn start() -> Option<Self> {
        let bin =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
        if !bin.exists() {
            assert!(
                !peers_required(),
                "moto is required (SWITCHYARD_REQUIRE_PEERS=1): run scripts/install-test-deps.sh"
            );
            eprintln!(
                "SKIPPED: no moto_server in .venv (scripts/install-test-deps.sh installs it)"
            );
            return None;
        }
        let port = super::sipp::free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        // Ready when it accepts connections (it takes a second or two to import).
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    pub async fn create_bucket(&self, name: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// The bucket's listing, as moto answers it (it lists for unsigned requests).
    pub async fn list(&self, bucket: &str) -> String {
        reqwest::get(format!("{}/{bucket}", self.endpoint))
            .await
            .expect("list")
            .text()
            .await
            .unwrap_or_default()
    }

    /// The ETag (the MD5 of the bytes, for a single PUT) and size of an
    /// object, from the bucket's listing.
    pub async fn object(&self, bucket: &str, key: &str) -> Option<(String, u64)> {
        let listing = self.list(bucket).await;
        let entry = listing
            .split("<Contents>")
            .find(|c| c.contains(&format!("<Key>{key}</Key>")))?;
        let field = |name: &str| -> Option<String> {
            let start = entry.find(&format!("<{name}>"))? + name.len() + 2;
            let end = entry[start..].find(&format!("</{name}>"))? + start;
            Some(entry[start..end].to_owned())
        };
        Some((
            field("ETag")?.replace("&#34;", "").replace('"', ""),
            field("Size")?.parse().ok()?,
        ))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
