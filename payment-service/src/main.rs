//! payment-service: config, telemetry, database, migrations, then serve until SIGTERM.

use anyhow::Context as _;
use common::{config::Vars, db::Database};
use payment_service::{AppState, Config, config::LISTEN_ADDR};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if common::healthcheck::requested() {
        common::healthcheck::run(&LISTEN_ADDR);
    }
    let config = Config::from_vars(&Vars::from_env()).context("reading the configuration")?;
    let telemetry = common::telemetry::init(&config.service.telemetry, env!("CARGO_PKG_VERSION"))
        .context("setting up telemetry")?;

    let db = Database::connect_lazy(&config.backend.database, config.backend.pool);
    db.migrate_when_ready()
        .await
        .context("waiting for the database and applying its migrations")?;

    let app = payment_service::router(AppState::new(&config, db), &config);
    common::http_server::serve_until_signal(&config.service, app).await?;

    telemetry.shutdown().await;
    Ok(())
}
