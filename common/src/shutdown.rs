//! The signal that starts a clean stop.
//!
//! `docker compose stop` sends SIGTERM; a terminal sends SIGINT with Ctrl-C. Either resolves
//! [`signal`], which the services hand to [`serve`](crate::http_server::serve): stop
//! accepting, let in-flight requests finish (idle keep-alive connections close at once), then
//! return, after which `main` flushes the tracer provider.

/// Resolves on the first SIGTERM or Ctrl-C.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "shutting down: finishing in-flight requests"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutting down: finishing in-flight requests"),
    }
}
