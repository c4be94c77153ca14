//! gateway: config, telemetry, then serve until SIGTERM.

use anyhow::Context as _;
use common::config::Vars;
use gateway::{AppState, Config, config::LISTEN_ADDR};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if common::healthcheck::requested() {
        common::healthcheck::run(&LISTEN_ADDR);
    }
    let config = Config::from_vars(&Vars::from_env()).context("reading the configuration")?;
    let telemetry = common::telemetry::init(&config.service.telemetry, env!("CARGO_PKG_VERSION"))
        .context("setting up telemetry")?;

    let app = gateway::router(AppState::new(&config), &config);
    common::http_server::serve_until_signal(&config.service, app).await?;

    telemetry.shutdown().await;
    Ok(())
}
