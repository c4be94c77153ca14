//! order-service: config, telemetry, database, migrations, then serve until SIGTERM.

use anyhow::Context as _;
use common::{config::Vars, db::Database};
use order_service::{AppState, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if common::healthcheck::requested() {
        common::healthcheck::run(8081);
    }
    let config = Config::from_vars(&Vars::from_env())?;
    let telemetry = common::telemetry::init("order-service", env!("CARGO_PKG_VERSION"))?;

    let db = Database::connect_lazy(config.database.clone(), config.pool);
    db.migrate_when_ready()
        .await
        .context("applying database migrations")?;

    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding LISTEN_ADDR {}", config.listen_addr))?;
    let app = order_service::router(AppState::new(&config, db), &config);
    common::http_server::serve(listener, app, config.server, common::shutdown::signal()).await?;

    telemetry.shutdown().await;
    Ok(())
}
