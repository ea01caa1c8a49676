//! Helpers for end-to-end tests: find the built `careloop` binary, start it in a temporary folder
//! with a free port, wait for it, stop it with a signal, and make throw-away PostgreSQL databases.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database};

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `careloop` binary built by the same `cargo test` run (next to this test's own executable).
pub fn careloop_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no profile folder")?;
    let bin = profile_dir.join("careloop");
    if !bin.exists() {
        bail!(
            "{} is missing: run the tests with `./careloop.sh test` (cargo test --workspace)",
            bin.display()
        );
    }
    Ok(bin)
}

/// The CPU test model fetched by `./careloop.sh setup`.
pub fn test_model() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("CARELOOP_TEST_MODEL") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    if !path.exists() {
        bail!(
            "test model {} is missing: run ./careloop.sh setup",
            path.display()
        );
    }
    Ok(path)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A `careloop` process started in its own temporary folder; killed if still running on drop.
pub struct Careloop {
    pub child: Child,
    pub base_url: String,
    pub dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

impl Careloop {
    /// Starts `careloop <args>` with the embedded defaults, a free port and the test model.
    /// `env` adds or overrides `CARELOOP_*` variables.
    pub fn start(args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Careloop> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let stderr_path = dir.path().join("careloop.log");
        let stderr = std::fs::File::create(&stderr_path)?;
        let mut cmd = Command::new(careloop_bin()?);
        cmd.args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("CARELOOP_SERVER__PORT", port.to_string())
            .env("CARELOOP_LLM__MODEL_PATH", test_model()?)
            .env("CARELOOP_CONTENT__DIR", workspace_root().join("content"))
            .env("CARELOOP_LOG__FILTER", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("spawn careloop")?;
        Ok(Careloop {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            dir,
            stderr_path,
        })
    }

    /// The process's own database (the embedded default's SQLite file in its data folder), to
    /// check what it recorded.
    pub async fn store(&self) -> anyhow::Result<careloop_store::Store> {
        let path = self.dir.path().join("data/careloop.sqlite");
        Ok(careloop_store::Store::connect(&format!("sqlite://{}", path.display())).await?)
    }

    /// What the process wrote to stderr so far (its logs).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Polls `path` until it answers `status` or `timeout` passes.
    pub async fn wait_for(
        &mut self,
        path: &str,
        status: u16,
        timeout: Duration,
    ) -> anyhow::Result<reqwest::Response> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.child.try_wait()? {
                bail!("careloop exited early with {exit}; logs:\n{}", self.logs());
            }
            if let Ok(resp) = client.get(format!("{}{path}", self.base_url)).send().await
                && resp.status().as_u16() == status
            {
                return Ok(resp);
            }
            if Instant::now() > deadline {
                bail!(
                    "{path} did not answer {status} within {timeout:?}; logs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends `signal` (e.g. "TERM") and waits for the process to exit.
    pub fn signal_and_wait(
        &mut self,
        signal: &str,
        timeout: Duration,
    ) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} failed");
        }
        wait_timeout(&mut self.child, timeout)
    }
}

/// Waits for a child to exit, killing it after `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            child.kill()?;
            bail!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Careloop {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The PostgreSQL server used by tests (trust auth on this machine).
pub fn postgres_admin_url() -> String {
    std::env::var("CARELOOP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh PostgreSQL database for one test, dropped by [`TestDatabase::drop_now`].
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> anyhow::Result<TestDatabase> {
        let admin = postgres_admin_url();
        let name = format!("careloop_e2e_{}", uuid::Uuid::new_v4().simple());
        let conn = Database::connect(&admin)
            .await
            .context("connect to PostgreSQL")?;
        conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b)
            .context("admin URL has no database")?;
        Ok(TestDatabase {
            url: format!("{base}/{name}"),
            name,
        })
    }

    pub async fn drop_now(self) -> anyhow::Result<()> {
        let conn = Database::connect(&postgres_admin_url()).await?;
        conn.execute_unprepared(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await?;
        Ok(())
    }
}
