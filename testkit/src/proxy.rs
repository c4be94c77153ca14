//! A TCP proxy a test can cut: put between a service and what it calls (Postgres, another
//! service), it shows what the service does when that neighbour vanishes mid-connection and
//! comes back, without stopping the neighbour itself.

use std::sync::{Arc, Mutex};

/// A TCP proxy in front of something a service calls (Postgres, another service), which a test
/// can cut: [`cut`](Self::cut) resets every open connection and refuses new ones until
/// [`restore`](Self::restore). Dropped with the test.
pub struct TcpProxy {
    address: std::net::SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    cut: bool,
    connections: Vec<tokio::task::AbortHandle>,
}

impl TcpProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let address = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut state = shared.lock().expect("proxy lock");
                if state.cut {
                    // Dropping the socket at once: the client sees the connection closed.
                    continue;
                }
                let pump = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                state.connections.retain(|c| !c.is_finished());
                state.connections.push(pump.abort_handle());
            }
        });
        TcpProxy {
            address,
            state,
            accept,
        }
    }

    /// `127.0.0.1:PORT`
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        let mut state = self.state.lock().expect("proxy lock");
        state.cut = true;
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.lock().expect("proxy lock").cut = false;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cut_proxy_refuses_connections_until_restored() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0; 4];
                    while let Ok(n @ 1..) = socket.read(&mut buf).await {
                        let _ = socket.write_all(&buf[..n]).await;
                    }
                });
            }
        });
        let proxy = TcpProxy::start(upstream).await;
        let roundtrip = || async {
            let mut s = tokio::net::TcpStream::connect(proxy.address()).await.ok()?;
            s.write_all(b"ping").await.ok()?;
            let mut buf = [0; 4];
            s.read_exact(&mut buf).await.ok()?;
            Some(buf)
        };
        assert_eq!(roundtrip().await, Some(*b"ping"));
        let mut open = tokio::net::TcpStream::connect(proxy.address())
            .await
            .unwrap();
        open.write_all(b"ab").await.unwrap();
        let mut two = [0; 2];
        open.read_exact(&mut two).await.unwrap();
        proxy.cut();
        assert_eq!(roundtrip().await, None, "new connections are closed");
        let mut rest = [0; 1];
        assert!(
            matches!(open.read(&mut rest).await, Ok(0) | Err(_)),
            "the open connection is closed too"
        );
        proxy.restore();
        assert_eq!(roundtrip().await, Some(*b"ping"));
    }
}
