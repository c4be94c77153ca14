//! A fresh Postgres database per test, on the server `DATABASE_URL` names.
//!
//! The end-to-end tests hand [`TestDatabase::url`] to the services they start, and the bench
//! does the same; the services' handler tests get theirs from `#[sqlx::test]` instead. Either
//! way no test sees another's rows, and the database is dropped when the test ends.

use reqwest::Url;
use sqlx::{Connection, PgConnection, PgPool};

/// The database server tests create their databases on. `DATABASE_URL` names any database
/// on it (the `postgres` one by default); each test creates and drops its own.
fn admin_url() -> Url {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    Url::parse(&url).unwrap_or_else(|e| panic!("DATABASE_URL {url:?} is not a URL: {e}"))
}

/// A database created for one test, dropped when the value is dropped.
pub struct TestDatabase {
    name: String,
    url: Url,
    pool: PgPool,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin = admin_url();
        let name = format!("e2e_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(admin.as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot reach Postgres at {admin}: {e}; is it running?"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("creating the test database");
        let url = with_database(&admin, &name);
        let pool = PgPool::connect(url.as_str())
            .await
            .expect("connecting to the test database");
        TestDatabase { name, url, pool }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// A pool for the test's own queries (checking rows).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// This database's URL, reached through `proxy` (a [`TcpProxy`](crate::proxy::TcpProxy)'s
    /// address) instead of directly.
    pub fn url_through(&self, proxy: std::net::SocketAddr) -> String {
        through(&self.url, proxy)
    }

    /// The address of the database server.
    pub fn server_address(&self) -> std::net::SocketAddr {
        server_address(&self.url)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_url();
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with a
        // runtime of its own can. FORCE ends the services' connections, if any remain.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(admin.as_str()).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// `url` with its host and port replaced by `proxy`'s; credentials, database and query kept.
fn through(url: &Url, proxy: std::net::SocketAddr) -> String {
    let mut url = url.clone();
    url.set_ip_host(proxy.ip())
        .and_then(|()| url.set_port(Some(proxy.port())))
        .expect("a database URL has a host");
    url.into()
}

/// The server `url` names: `localhost` taken as 127.0.0.1, the port 5432 unless it says.
fn server_address(url: &Url) -> std::net::SocketAddr {
    let ip = match url.host_str() {
        Some("localhost") => std::net::Ipv4Addr::LOCALHOST.into(),
        // An IPv6 host keeps its brackets in a URL.
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .unwrap_or_else(|_| panic!("the database host {host} is not an IP address")),
        None => panic!("the database URL {url} names no host"),
    };
    std::net::SocketAddr::new(ip, url.port().unwrap_or(5432))
}

/// `url` with its database (the path) replaced by `name`; the query, if any, is kept.
fn with_database(url: &Url, name: &str) -> Url {
    let mut url = url.clone();
    url.set_path(name);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_in_any_url_shape() {
        let replaced = |url: &str| with_database(&Url::parse(url).unwrap(), "x").to_string();
        assert_eq!(
            replaced("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(replaced("postgres://h:1"), "postgres://h:1/x");
        assert_eq!(
            replaced("postgres://h/db?sslmode=disable"),
            "postgres://h/x?sslmode=disable"
        );
    }

    #[test]
    fn the_server_address_and_the_url_through_a_proxy_come_from_one_parsed_url() {
        let db = |url: &str| Url::parse(url).unwrap();
        let proxy: std::net::SocketAddr = "127.0.0.1:7777".parse().unwrap();
        let url = db("postgres://postgres:pw@localhost/e2e_1?sslmode=disable");
        assert_eq!(server_address(&url), "127.0.0.1:5432".parse().unwrap());
        assert_eq!(
            through(&url, proxy),
            "postgres://postgres:pw@127.0.0.1:7777/e2e_1?sslmode=disable"
        );
        let url = db("postgres://[::1]:6543/e2e_2");
        assert_eq!(server_address(&url), "[::1]:6543".parse().unwrap());
        assert_eq!(through(&url, proxy), "postgres://127.0.0.1:7777/e2e_2");
    }
}
