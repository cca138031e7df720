//! Binaries of this workspace run as child processes by tests, stopped when the test ends.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A workspace binary next to the test executable (target/<profile>/<name>); `run-tests`
/// builds them before the e2e tests.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Tests run from target/<profile>/deps/<test>-<hash>, binaries from target/<profile>/<bin>.
    let mut profile_dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("unexpected executable path {}", exe.display()))?;
    if profile_dir.ends_with("deps") {
        profile_dir = profile_dir.parent().unwrap_or(profile_dir);
    }
    let binary = profile_dir.join(name);
    anyhow::ensure!(
        binary.exists(),
        "{} not found: build it first with `cargo build -p <its package> --bin {name}`",
        binary.display()
    );
    Ok(binary)
}

/// A child process that is killed (and reaped) when dropped, with its output in a log file.
pub struct Running {
    child: Child,
    pub log: PathBuf,
}

impl Running {
    pub fn start(mut command: Command, log: PathBuf) -> anyhow::Result<Self> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(Self { child, log })
    }

    /// Whether it is still running; an error with the log's tail if it exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            anyhow::bail!(
                "process exited with {status}; last lines of {}:\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) the process has used (all its threads).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // Fields 14 and 15 of /proc/PID/stat (utime, stime) after the command name, in the
        // kernel's USER_HZ ticks (100 on Linux).
        Ok((ticks(11) + ticks(12)) / 100.0)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// SIGKILL, and wait for the process to be gone.
    pub fn kill_now(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {}: {status}", self.pid());
        Ok(())
    }

    /// SIGTERM, then wait up to `grace` for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self, grace: std::time::Duration) -> anyhow::Result<bool> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.kill_now()?;
        Ok(false)
    }
}

impl Running {
    /// The log's lines at ERROR level (ANSI colours removed): normal operation writes none, so
    /// a test of a run without faults asserts this is empty.
    pub fn error_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(strip_ansi)
            .filter(|line| line.split_whitespace().nth(1) == Some("ERROR"))
            .collect()
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a child to take).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Running {
    /// Waits until `GET http://127.0.0.1:{port}/health/ready` answers 200, failing early (with
    /// the log's tail) if the process exits.
    pub async fn wait_ready(
        &mut self,
        port: u16,
        timeout: std::time::Duration,
    ) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let ready = http
                .get(format!("http://127.0.0.1:{port}/health/ready"))
                .timeout(std::time::Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "not ready after {timeout:?}; log {}",
                self.log.display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ansi_colours_are_stripped() {
        let line = "\u{1b}[2m2026-12-07T05:23:54.475113Z\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m \u{1b}[2mrdkafka::client\u{1b}[0m\u{1b}[2m:\u{1b}[0m librdkafka";
        assert_eq!(
            super::strip_ansi(line),
            "2026-12-07T05:23:54.475113Z ERROR rdkafka::client: librdkafka"
        );
    }
}
