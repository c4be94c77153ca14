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

    let listener = tokio::net::TcpListener::bind(config.service.listen_addr)
        .await
        .with_context(|| format!("binding LISTEN_ADDR {}", config.service.listen_addr))?;
    let app = gateway::router(AppState::new(&config), &config);
    common::http_server::serve(
        listener,
        app,
        config.service.connections,
        common::shutdown::signal(),
    )
    .await
    .context("serving HTTP")?;

    telemetry.shutdown().await;
    Ok(())
}
