//! Starts the real `sphere` binary on a free port with its own data directory, and gives the
//! test a real HTTPS client that trusts the server's generated certificate.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub port: u16,
    pub data_dir: PathBuf,
    /// What the server printed on stdout after its "listening" line.
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _temp: Option<tempfile::TempDir>,
}

pub fn sphere() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sphere"))
}

impl Server {
    /// Starts `sphere serve` on a fresh data directory.
    pub fn start() -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_owned();
        let mut server = Self::start_in(&dir, &[], &[]);
        server._temp = Some(temp);
        server
    }

    /// Starts `sphere serve` on `data_dir` with extra arguments and environment.
    pub fn start_in(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = sphere()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("SPHERE_LOG_LEVEL", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sphere");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("sphere exited before listening")
                .expect("read stdout");
            if let Some(addr) = line.split(" listening on ").nth(1) {
                let port = addr.rsplit(':').next().expect("an address with a port");
                break port.trim().parse::<u16>().expect("a port number");
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe, keeping the lines.
        let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = printed.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().expect("not poisoned").push(line);
            }
        });
        let plain = env.iter().any(|(k, v)| *k == "SPHERE_TLS" && *v == "false");
        let scheme = if plain { "http" } else { "https" };
        let server = Self {
            child: Some(child),
            base: format!("{scheme}://localhost:{port}"),
            port,
            data_dir: data_dir.to_owned(),
            stdout: printed,
            _temp: None,
        };
        server.wait_ready();
        server
    }

    /// Waits (up to 10 s) until the server has printed a line containing `marker`, then returns
    /// everything it printed after its "listening" line.
    pub fn printed_through(&self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.stdout.lock().expect("not poisoned").join("\n");
            if text.contains(marker) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.data_dir.join("tls/cert.pem")).expect("generated certificate")
    }

    /// A client that trusts this server's certificate (and only it).
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("client")
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let cert = reqwest::Certificate::from_pem(&self.cert_pem()).expect("PEM certificate");
        reqwest::Client::builder()
            .tls_certs_only([cert])
            .timeout(Duration::from_secs(30))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn wait_ready(&self) {
        let client = if self.base.starts_with("https") {
            self.client()
        } else {
            reqwest::Client::new()
        };
        let url = self.url("/health/ready");
        // Its own thread and runtime, so this works from sync and async tests alike.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let deadline = Instant::now() + Duration::from_secs(30);
            runtime.block_on(async {
                loop {
                    if let Ok(r) = client.get(&url).send().await {
                        if r.status().is_success() {
                            return;
                        }
                    }
                    assert!(Instant::now() < deadline, "server not ready in 30s");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .join()
        .expect("server became ready");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
