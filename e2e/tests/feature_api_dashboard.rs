//! The dashboard in headless Chromium (Debian `chromium`, driven by Debian `chromium-driver`
//! over the WebDriver protocol): the page served by feature-api, fed by server-sent events,
//! shows the revenue chart and the alert feed from test data. The test saves a screenshot and
//! the rendered DOM, and asserts on the DOM.
//!
//! (`chromium --dump-dom` is not enough: it dumps at the load event, before the first event
//! arrives, and `--virtual-time-budget` never ends while an EventSource is open.)

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use trendstream_e2e::feature_api::{
    FeatureApi, WINDOWS, free_port, log_dir, remove_all, seed, wait_for,
};
use trendstream_e2e::process::Running;
use trendstream_e2e::{TestEnv, unique_name};
use trendstream_events::feature_store::KeySpace;

/// A WebDriver session of a chromedriver this test started; the browser is closed on `quit`.
struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: Running,
}

impl Browser {
    async fn start(profile: &std::path::Path, log: std::path::PathBuf) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut command = Command::new("chromedriver");
        command.args([
            format!("--port={port}"),
            "--allowed-ips=127.0.0.1".into(),
            "--allowed-origins=http://127.0.0.1".into(),
        ]);
        let mut driver = Running::start(command, log)?;
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver", Duration::from_secs(20), || {
            let (http, status) = (http.clone(), format!("{base}/status"));
            async move { http.get(&status).send().await.is_ok() }
        })
        .await?;
        driver.check_alive()?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await?
            .json()
            .await?;
        let id = created["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no WebDriver session: {created}"))?;
        Ok(Self {
            http,
            session: format!("{base}/session/{id}"),
            _driver: driver,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = if body.is_null() {
            request
        } else {
            request.json(&body)
        };
        let answer: Value = request.send().await?.json().await?;
        anyhow::ensure!(
            answer["value"].get("error").is_none(),
            "WebDriver {path}: {answer}"
        );
        Ok(answer["value"].clone())
    }

    async fn script(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    async fn quit(self) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, "", Value::Null).await?;
        Ok(())
    }
}

#[tokio::test]
async fn dashboard_shows_the_revenue_chart_and_alerts_in_headless_chromium() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let redis_url = env.get("REDIS_URL")?;
    let prefix = unique_name("fadash").replace('-', "_");
    let keys = KeySpace::new(prefix.clone());
    let data = seed(redis_url, &keys).await?;
    let api = FeatureApi::start(redis_url, &prefix, &["--dashboard-interval", "200ms"]).await?;
    let dir = log_dir().join(&prefix);
    std::fs::create_dir_all(&dir)?;
    let browser = Browser::start(&dir.join("profile"), dir.join("chromedriver.log")).await?;

    let result = async {
        browser
            .call(
                reqwest::Method::POST,
                "/url",
                json!({"url": api.url("/dashboard")}),
            )
            .await?;
        let mut state = Value::Null;
        for _ in 0..100 {
            state = browser
                .script(
                    "return {status: document.getElementById('status').className, \
                     points: document.getElementById('revenue-chart').getAttribute('data-points'), \
                     alerts: document.getElementById('alerts').getAttribute('data-count')};",
                )
                .await?;
            if state["status"] == "live" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            state["status"], "live",
            "a snapshot arrived by the event stream: {state}"
        );
        let dom = browser
            .script("return document.documentElement.outerHTML;")
            .await?;
        let dom = dom.as_str().unwrap_or_default().to_owned();
        std::fs::write(dir.join("dashboard.html"), &dom)?;
        let shot = browser
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await?;
        let png =
            base64::engine::general_purpose::STANDARD.decode(shot.as_str().unwrap_or_default())?;
        let screenshot = dir.join("dashboard.png");
        std::fs::write(&screenshot, &png)?;
        println!(
            "screenshot {} ({} bytes), DOM {}",
            screenshot.display(),
            png.len(),
            dir.join("dashboard.html").display()
        );
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "a real screenshot"
        );

        assert!(
            dom.contains(&format!("data-points=\"{WINDOWS}\"")),
            "the chart has a bar per window:\n{dom}"
        );
        assert_eq!(
            dom.matches("class=\"bar\"").count(),
            WINDOWS as usize,
            "{dom}"
        );
        for alert in &data.alerts {
            assert!(
                dom.contains(&format!("data-alert-id=\"{}\"", alert.alert_id)),
                "alert {} in the feed:\n{dom}",
                alert.alert_id
            );
        }
        assert!(dom.contains("HIGH_VALUE_BURST"), "{dom}");
        anyhow::Ok(())
    }
    .await;
    browser.quit().await?;
    remove_all(redis_url, &keys).await?;
    result
}
