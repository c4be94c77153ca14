//! gateway: config, telemetry, then serve until SIGTERM.

use anyhow::Context as _;
use common::config::Vars;
use gateway::{AppState, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if common::healthcheck::requested() {
        common::healthcheck::run(8080);
    }
    let config = Config::from_vars(&Vars::from_env())?;
    let telemetry = common::telemetry::init("gateway", env!("CARGO_PKG_VERSION"))?;

    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding LISTEN_ADDR {}", config.listen_addr))?;
    let app = gateway::router(AppState::new(&config), &config);
    common::http_server::serve(listener, app, config.server, common::shutdown::signal()).await?;

    telemetry.shutdown().await;
    Ok(())
}
