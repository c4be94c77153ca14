//! `<binary> healthcheck`: is the service running in this container ready?
//!
//! The runtime image has no shell tools (no curl, no wget: less to patch, less for an
//! intruder to use), so each binary can check itself. Docker's `HEALTHCHECK` runs
//! `gateway healthcheck`, which asks the running gateway's `GET /readyz` on the port from
//! `LISTEN_ADDR` and exits 0 when it answers 200. Compose waits on it to start the services in
//! dependency order.
//!
//! Plain HTTP/1.1 over a std `TcpStream`: no runtime, no client stack, done in milliseconds.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::Duration,
};

use crate::config::{Var, Vars};

/// Whether the binary was started as `<binary> healthcheck`.
pub fn requested() -> bool {
    std::env::args().nth(1).as_deref() == Some("healthcheck")
}

/// Probes `/readyz` of the service on this host, on the port of `listen_addr` (the service's
/// `LISTEN_ADDR`, whose declared default holds when it is unset), and exits: 0 when ready, 1
/// when not.
pub fn run(listen_addr: &Var) -> ! {
    let port = Vars::from_env()
        .parse::<SocketAddr>(listen_addr)
        .map(|addr| addr.port());
    let result = port
        .map_err(|e| e.to_string())
        .and_then(|port| probe(SocketAddr::from((Ipv4Addr::LOCALHOST, port))));
    match result {
        Ok(()) => std::process::exit(0),
        Err(reason) => {
            eprintln!("not ready: {reason}");
            std::process::exit(1)
        }
    }
}

fn probe(addr: SocketAddr) -> Result<(), String> {
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut head = [0_u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("reading the answer: {e}"))?;
    match &head {
        b"HTTP/1.1 200" => Ok(()),
        other => Err(format!("answered {}", String::from_utf8_lossy(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ready_service_passes_and_an_unready_one_fails() {
        let ready = axum::Router::new().route("/readyz", axum::routing::get(|| async { "ok" }));
        let unready = axum::Router::new().route(
            "/readyz",
            axum::routing::get(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
        );
        let mut addrs = Vec::new();
        for router in [ready, unready] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, router).await });
        }
        let (ok, not_ok) = (addrs[0], addrs[1]);
        let results = tokio::task::spawn_blocking(move || (probe(ok), probe(not_ok)))
            .await
            .unwrap();
        assert_eq!(results.0, Ok(()));
        assert_eq!(results.1, Err("answered HTTP/1.1 503".to_owned()));
    }

    #[test]
    fn nothing_listening_fails() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(probe(addr).unwrap_err().starts_with("connecting to"));
    }
}
