//! Fake neighbours for handler tests: a service's router runs in-process, and the service it
//! calls is a small axum router of the test's own, served on a free local port.

use std::net::SocketAddr;

/// Serves `router` on a free port of 127.0.0.1, in the background, for the rest of the test;
/// returns `http://127.0.0.1:PORT`.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a port for the fake");
    let addr: SocketAddr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// The URL of a local port nothing listens on (bound, then released): a service that is down.
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a free port");
    let addr = listener.local_addr().expect("a bound address");
    drop(listener);
    format!("http://{addr}")
}
