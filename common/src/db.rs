//! Postgres: the pool, the migrations, and a CLIENT span for every SQL statement.
//!
//! sqlx emits log events, not spans, so the database tier of the waterfall is ours to draw.
//! Every query the services run goes through the methods of [`Database`] (a connection of its
//! own for each statement) or of a [`Session`] (statements back to back on one connection)
//! with a [`Statement`]: a constant that holds the SQL text (parameterised: values are always
//! bound, never formatted into the text) and the operation and table it works on. The methods
//! open one span per statement with the current database semantic conventions:
//!
//! | attribute                   | example                              |
//! |-----------------------------|--------------------------------------|
//! | span name                   | `INSERT orders`                      |
//! | `db.system.name`            | `postgresql`                         |
//! | `db.namespace`              | `orders` (the database)              |
//! | `db.operation.name`         | `INSERT`                             |
//! | `db.collection.name`        | `orders`                             |
//! | `db.query.text`             | `INSERT INTO orders (id, …) VALUES ($1, …)` |
//! | `server.address`/`.port`    | `postgres` / `5432`                  |
//! | `db.response.returned_rows` | `1`                                  |
//! | `db.response.status_code`   | `23505` (SQLSTATE, on failure)       |
//!
//! A failed statement marks its span ERROR with an `exception` event (see
//! [`record_failure`]).

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use sqlx::{
    Connection, Postgres,
    migrate::{MigrateError, Migrator},
    pool::PoolConnection,
    postgres::{
        PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgQueryResult, PgRow,
    },
    query::{Query, QueryAs},
};
use tracing::{Instrument, field::Empty};

use crate::{
    config::{ConfigError, Secret, Vars, shared},
    telemetry::{Failure, record_failure},
};

/// The schema, embedded from `migrations/` at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// One SQL statement and what it works on.
#[derive(Clone, Copy, Debug)]
pub struct Statement {
    /// `INSERT orders`: the span's name, the operation and the table.
    pub name: &'static str,
    /// `SELECT`, `INSERT`, `UPDATE`, ...
    pub operation: &'static str,
    /// The table.
    pub collection: &'static str,
    /// The SQL, with `$1`-style placeholders.
    pub text: &'static str,
}

impl Statement {
    /// A statement named `OPERATION table` (the span name the semantic conventions give a
    /// statement), split into its operation and table at compile time: a name of any other
    /// shape does not compile.
    pub const fn new(name: &'static str, text: &'static str) -> Self {
        let bytes = name.as_bytes();
        let mut space = 0;
        while space < bytes.len() && bytes[space] != b' ' {
            space += 1;
        }
        assert!(
            space > 0 && space + 1 < bytes.len(),
            "a statement's name is `OPERATION table`"
        );
        let (operation, rest) = name.split_at(space);
        let (_, collection) = rest.split_at(1);
        Statement {
            name,
            operation,
            collection,
            text,
        }
    }
}

/// The connection target, recorded on every span.
#[derive(Debug)]
struct Target {
    namespace: String,
    address: String,
    port: u16,
}

/// The pool, plus what the spans say about it. Cheap to clone: both halves are shared.
///
/// Created in `main` (or by a test) and kept in the service's state for its whole life;
/// dropping the last clone closes the pool.
#[derive(Clone, Debug)]
pub struct Database {
    pool: PgPool,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    target: Target,
    warm: Mutex<Warm>,
    settings: PoolSettings,
}

/// Connections whose last statement completed, kept out of sqlx's pool for a moment.
///
/// sqlx pings every connection that comes back to its pool (`PoolConnection::return_to_pool`
/// in `sqlx-core`: a task of its own and a round trip to Postgres, which it has no switch
/// for). The ping is there for a connection left mid-protocol by a cancelled statement, and to
/// find a broken one; a connection whose statement has just completed is neither, so it waits
/// here instead and the next session takes it back with no round trip at all. It is still
/// sqlx's: checked out of its pool, counted against `max_connections`.
///
/// Newest last: a session takes the connection used most recently, so under a light load the
/// same few stay in use. One unused for [`PoolSettings::ping_when_idle_for`] goes back to sqlx's
/// pool (and through its ping), where its `before_acquire` check and idle timeout apply as
/// before; so does one out of sqlx's pool for [`PoolSettings::recheck_every`], whatever its
/// use. While a session waits on sqlx's pool for a connection, those coming back go to sqlx,
/// which hands them to the waiting: none sits here while a session waits for one.
#[derive(Default)]
struct Warm {
    /// Each with when it was last used.
    connections: VecDeque<(Held, Instant)>,
    /// Sessions waiting on sqlx's pool ([`Waiting`]).
    waiting: usize,
}

impl fmt::Debug for Warm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Warm")
            .field("connections", &self.connections.len())
            .field("waiting", &self.waiting)
            .finish()
    }
}

/// A connection out of sqlx's pool, and since when.
struct Held {
    connection: PoolConnection<Postgres>,
    taken: Instant,
}

/// A session counted as waiting on sqlx's pool, until it has a connection or gives up.
struct Waiting<'db>(&'db Database);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.warm().waiting -= 1;
    }
}

/// Pool sizing and timeouts: no query waits forever, for a connection or for a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// `DATABASE_MAX_CONNECTIONS`.
    pub max_connections: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT_MS`: how long a query waits for a free connection before it
    /// fails (the service then answers 503 instead of queueing forever).
    pub acquire_timeout: Duration,
    /// `DATABASE_STATEMENT_TIMEOUT_MS`: Postgres cancels a statement that runs longer
    /// (SQLSTATE 57014), a blocked lock included; the service answers 503.
    pub statement_timeout: Duration,
    /// `DATABASE_PING_IDLE_MS`: how long a connection may sit idle in the pool and still be
    /// handed out without a ping (the Java pool `HikariCP` skips its check the same way, for
    /// 500 ms after a connection's last use: `aliveBypassWindowMs`). Under load no connection
    /// idles that long, so no statement pays a second round trip; after a quiet spell a
    /// connection the server or a proxy closed meanwhile is found out and replaced. A
    /// connection that breaks while in use, or within the window, fails its statement (503,
    /// `database_unavailable`), and sqlx closes it when it comes back to the pool (it pings
    /// every connection on its way back). Also how long a connection whose statements
    /// completed is kept for the next session without that ping (see [`Session`]).
    pub ping_when_idle_for: Duration,
    /// `DATABASE_RECHECK_MS`: a connection kept for the next session goes back through sqlx's
    /// pool instead once it has been out of it this long, so that sqlx still pings it on the
    /// way back and closes it past its lifetime limit, however busy it is.
    pub recheck_every: Duration,
}

impl Default for PoolSettings {
    /// The declared defaults (`config::shared::DATABASE_*`), parsed as if nothing were set.
    fn default() -> Self {
        PoolSettings::from_vars(&Vars::from_pairs([])).expect("the declared pool defaults parse")
    }
}

impl PoolSettings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(PoolSettings {
            max_connections: vars.parse(&shared::DATABASE_MAX_CONNECTIONS)?,
            acquire_timeout: vars.millis(&shared::DATABASE_ACQUIRE_TIMEOUT_MS)?,
            statement_timeout: vars.millis(&shared::DATABASE_STATEMENT_TIMEOUT_MS)?,
            ping_when_idle_for: vars.millis(&shared::DATABASE_PING_IDLE_MS)?,
            recheck_every: vars.millis(&shared::DATABASE_RECHECK_MS)?,
        })
    }
}

impl Database {
    /// A pool that connects on first use: the service starts (and answers `/healthz`) while
    /// the database is still coming up, and reconnects by itself after it went away.
    ///
    /// The options hold the password, so they arrive as a [`Secret`]; once inside the pool
    /// they are out of reach of `Debug` (sqlx prints a pool's sizes, not its options).
    pub fn connect_lazy(options: &Secret<PgConnectOptions>, settings: PoolSettings) -> Self {
        let options = options.expose_secret().clone();
        let target = Target {
            namespace: options
                .get_database()
                .unwrap_or_else(|| options.get_username())
                .to_owned(),
            address: options.get_host().to_owned(),
            port: options.get_port(),
        };
        let options = options.options([(
            "statement_timeout",
            format!("{}ms", settings.statement_timeout.as_millis()),
        )]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // sqlx's default pings every connection it hands out: one more round trip to
            // Postgres per statement, inside the statement's span. A connection used moments
            // ago is as alive as the ping would say, so only one idle for a while is checked.
            .test_before_acquire(false)
            .before_acquire(move |connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= settings.ping_when_idle_for {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Database {
            pool,
            shared: Arc::new(Shared {
                target,
                warm: Mutex::default(),
                settings,
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Connections ready for a statement: those sqlx's pool holds idle, and those that came
    /// back from a statement moments ago (see [`Session`]).
    pub fn num_idle(&self) -> usize {
        self.warm().connections.len() + self.pool.num_idle()
    }

    /// Closes the pool, waiting for every connection in use to come back first. The
    /// connections kept warm go back to sqlx's pool before it closes, so none is waited for.
    pub async fn close(&self) {
        drop(std::mem::take(&mut self.warm().connections));
        self.pool.close().await;
    }

    fn warm(&self) -> MutexGuard<'_, Warm> {
        // Nothing panics while holding it: a poisoned lock still holds whole connections.
        self.shared
            .warm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection used most recently, if one was used within the window; otherwise the
    /// session is counted as waiting on sqlx's pool, and any stale ones go back to it.
    fn take_warm(&self) -> Result<Held, Waiting<'_>> {
        let mut warm = self.warm();
        // Pushed in time order, so if the newest is stale, all are.
        if let Some((_, since)) = warm.connections.back()
            && since.elapsed() < self.shared.settings.ping_when_idle_for
            && let Some((held, _)) = warm.connections.pop_back()
        {
            return Ok(held);
        }
        let stale = std::mem::take(&mut warm.connections);
        warm.waiting += 1;
        drop(warm);
        drop(stale);
        Err(Waiting(self))
    }

    /// A connection for a session: one kept warm, or one from sqlx's pool.
    ///
    /// sqlx's acquire future holds, inline, everything it takes to open a new connection: some
    /// kilobytes, which every future that awaits it (the handler's, up to the task) would carry
    /// and copy each time it is moved. Boxed, it is one allocation when a session starts, as on
    /// sqlx's own path for a statement run on the pool.
    async fn acquire(&self) -> Result<Held, sqlx::Error> {
        match self.take_warm() {
            Ok(held) => Ok(held),
            Err(waiting) => {
                let connection = Box::pin(self.pool.acquire()).await;
                drop(waiting);
                Ok(Held {
                    connection: connection?,
                    taken: Instant::now(),
                })
            }
        }
    }

    /// Keeps a connection whose statements completed for the next session, or gives it back
    /// to sqlx's pool: while a session waits there, once it is due for sqlx's check, or when
    /// the pool is closing. The oldest kept goes back once stale.
    fn keep_warm(&self, held: Held) {
        let settings = &self.shared.settings;
        let mut warm = self.warm();
        if warm.waiting > 0
            || held.taken.elapsed() >= settings.recheck_every
            || self.pool.is_closed()
        {
            drop(warm);
            drop(held);
            return;
        }
        let stale = warm
            .connections
            .front()
            .is_some_and(|(_, since)| since.elapsed() >= settings.ping_when_idle_for)
            .then(|| warm.connections.pop_front());
        warm.connections.push_back((held, Instant::now()));
        drop(warm);
        drop(stale);
    }

    /// Applies the migrations that have not run yet. Safe when several services start at
    /// once: sqlx holds a Postgres advisory lock while it migrates, so one service applies
    /// them and the others wait, then find nothing left to do.
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    /// [`migrate`](Self::migrate), retried for up to a minute while the database is still
    /// starting (a container that comes up before Postgres accepts connections).
    pub async fn migrate_when_ready(&self) -> Result<(), MigrateError> {
        let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
        let mut pause = Duration::from_millis(250);
        loop {
            match self.migrate().await {
                Err(MigrateError::Execute(e))
                    if is_unavailable(&e) && tokio::time::Instant::now() < deadline =>
                {
                    tracing::warn!(error = %e, retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX), "database not reachable yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                result => return result,
            }
        }
    }

    /// Whether the database answers within a second, for `/readyz`. Not a traced statement:
    /// probes are not traced.
    pub async fn ping(&self) -> bool {
        let ping = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), ping).await,
            Ok(Ok(_))
        )
    }

    /// Runs a statement that returns exactly one row, on a connection of its own.
    pub async fn fetch_one<O>(
        &self,
        statement: &Statement,
        bind: impl FnOnce(
            QueryAs<'static, Postgres, O, PgArguments>,
        ) -> QueryAs<'static, Postgres, O, PgArguments>,
    ) -> Result<O, sqlx::Error>
    where
        O: Send + Unpin + for<'r> sqlx::FromRow<'r, PgRow>,
    {
        self.session().fetch_one(statement, bind).await
    }

    /// Runs a statement that returns zero or one row, on a connection of its own.
    pub async fn fetch_optional<O>(
        &self,
        statement: &Statement,
        bind: impl FnOnce(
            QueryAs<'static, Postgres, O, PgArguments>,
        ) -> QueryAs<'static, Postgres, O, PgArguments>,
    ) -> Result<Option<O>, sqlx::Error>
    where
        O: Send + Unpin + for<'r> sqlx::FromRow<'r, PgRow>,
    {
        self.session().fetch_optional(statement, bind).await
    }

    /// Runs a statement that returns no rows, on a connection of its own; the result says how
    /// many it affected.
    pub async fn execute(
        &self,
        statement: &Statement,
        bind: impl FnOnce(
            Query<'static, Postgres, PgArguments>,
        ) -> Query<'static, Postgres, PgArguments>,
    ) -> Result<PgQueryResult, sqlx::Error> {
        self.session().execute(statement, bind).await
    }

    /// Statements that run back to back on one connection: see [`Session`].
    pub fn session(&self) -> Session<'_> {
        Session {
            db: self,
            connection: None,
            settled: false,
        }
    }

    /// The span around one statement. Public so a statement run in a way the methods above
    /// do not cover (a transaction, a stream) still gets the same span.
    pub async fn traced<T>(
        &self,
        statement: &Statement,
        run: impl Future<Output = Result<T, sqlx::Error>>,
        returned_rows: impl FnOnce(&T) -> u64,
    ) -> Result<T, sqlx::Error> {
        let target = &self.shared.target;
        let span = tracing::info_span!(
            "db statement",
            otel.name = statement.name,
            otel.kind = "client",
            db.system.name = "postgresql",
            db.namespace = target.namespace.as_str(),
            db.operation.name = statement.operation,
            db.collection.name = statement.collection,
            db.query.text = statement.text,
            server.address = target.address.as_str(),
            server.port = i64::from(target.port),
            db.response.returned_rows = Empty,
            db.response.status_code = Empty,
        );
        let result = run.instrument(span.clone()).await;
        match &result {
            Ok(value) => {
                span.record(
                    "db.response.returned_rows",
                    i64::try_from(returned_rows(value)).unwrap_or(i64::MAX),
                );
            }
            Err(error) => {
                let sqlstate = error
                    .as_database_error()
                    .and_then(sqlx::error::DatabaseError::code)
                    .map(std::borrow::Cow::into_owned);
                if let Some(code) = &sqlstate {
                    span.record("db.response.status_code", code.as_str());
                }
                let error_type = sqlstate.unwrap_or_else(|| error_kind(error).to_owned());
                record_failure(&span, &Failure::of(error_type, error));
            }
        }
        result
    }
}

/// Statements that run one after another on one pooled connection.
///
/// The connection is taken by the first statement, inside that statement's span (so a wait
/// for it shows there), and is kept until the session is dropped. Statements that run back to
/// back, with nothing slow between them, share it. A statement that fails, or is cancelled
/// before it completes, lets its connection go back to sqlx's pool, whose ping closes it if it
/// is broken, and the next statement takes another. When the session is dropped after its
/// statements completed, the connection is kept for the next session (see [`Warm`]): a
/// connection that has just answered needs no ping.
///
/// Drop the session before anything slow, a call to another service above all: a connection
/// held across it is one the other requests cannot have.
pub struct Session<'db> {
    db: &'db Database,
    connection: Option<Held>,
    /// Whether the connection's last statement completed: one cancelled midway may have left
    /// it mid-protocol.
    settled: bool,
}

impl Session<'_> {
    /// Runs a statement that returns exactly one row.
    pub async fn fetch_one<O>(
        &mut self,
        statement: &Statement,
        bind: impl FnOnce(
            QueryAs<'static, Postgres, O, PgArguments>,
        ) -> QueryAs<'static, Postgres, O, PgArguments>,
    ) -> Result<O, sqlx::Error>
    where
        O: Send + Unpin + for<'r> sqlx::FromRow<'r, PgRow>,
    {
        let query = bind(sqlx::query_as(statement.text));
        self.run(
            statement,
            |_| 1,
            async |connection| query.fetch_one(connection).await,
        )
        .await
    }

    /// Runs a statement that returns zero or one row.
    pub async fn fetch_optional<O>(
        &mut self,
        statement: &Statement,
        bind: impl FnOnce(
            QueryAs<'static, Postgres, O, PgArguments>,
        ) -> QueryAs<'static, Postgres, O, PgArguments>,
    ) -> Result<Option<O>, sqlx::Error>
    where
        O: Send + Unpin + for<'r> sqlx::FromRow<'r, PgRow>,
    {
        let query = bind(sqlx::query_as(statement.text));
        self.run(
            statement,
            |row: &Option<O>| u64::from(row.is_some()),
            async |connection| query.fetch_optional(connection).await,
        )
        .await
    }

    /// Runs a statement that returns no rows; the result says how many it affected.
    pub async fn execute(
        &mut self,
        statement: &Statement,
        bind: impl FnOnce(
            Query<'static, Postgres, PgArguments>,
        ) -> Query<'static, Postgres, PgArguments>,
    ) -> Result<PgQueryResult, sqlx::Error> {
        let query = bind(sqlx::query(statement.text));
        self.run(
            statement,
            |_| 0,
            async |connection| query.execute(connection).await,
        )
        .await
    }

    /// Runs `query` on the session's connection, in the statement's span. A failed statement
    /// may leave its connection broken, and a cancelled one (its future dropped) mid-protocol:
    /// either way the connection goes back to sqlx's pool, not to the next statement.
    async fn run<T>(
        &mut self,
        statement: &Statement,
        returned_rows: impl FnOnce(&T) -> u64,
        query: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let db = self.db;
        let (slot, settled) = (&mut self.connection, &mut self.settled);
        let run = async move {
            let held = match slot.take() {
                Some(held) => held,
                None => db.acquire().await?,
            };
            *settled = false;
            let result = query(&mut slot.insert(held).connection).await;
            *settled = result.is_ok();
            result
        };
        let result = db.traced(statement, run, returned_rows).await;
        if result.is_err() {
            self.connection = None;
        }
        result
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // Dropped otherwise: back to sqlx's pool, whose ping waits out a cut-off statement.
        if let Some(held) = self.connection.take()
            && self.settled
        {
            self.db.keep_warm(held);
        }
    }
}

/// A low-cardinality `error.type` for errors that carry no SQLSTATE.
fn error_kind(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::PoolTimedOut => "pool_timeout",
        sqlx::Error::PoolClosed => "pool_closed",
        sqlx::Error::Io(_) => "io",
        sqlx::Error::Protocol(_) => "protocol",
        sqlx::Error::RowNotFound => "row_not_found",
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => "decode",
        _ => "database",
    }
}

/// A value read from a column that is not one the column may hold (an unknown status, say),
/// as sqlx reports a decode failure of its own: the row is an error, never a default.
pub fn undecodable(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// Whether an error means the database is unreachable, overloaded or briefly in the way
/// (answer 503 and let the caller retry) rather than a bug or a constraint (which a retry
/// would not fix).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // 08: connection exceptions; 53: insufficient resources (too many connections);
            // 57: operator intervention (statement timeout 57014, shutdown 57P01..57P03);
            // 40001/40P01: serialization failure and deadlock; 55P03: lock not available.
            ["08", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class))
                || matches!(&*code, "40001" | "40P01" | "55P03")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_name_is_its_operation_and_its_table() {
        const STATEMENT: Statement =
            Statement::new("INSERT refused_charges", "INSERT INTO refused_charges ...");
        assert_eq!(STATEMENT.name, "INSERT refused_charges");
        assert_eq!(STATEMENT.operation, "INSERT");
        assert_eq!(STATEMENT.collection, "refused_charges");
    }

    #[tokio::test]
    async fn a_statement_future_is_small_enough_to_move_around() {
        // Every future that awaits a statement carries it inline, the handler's included, and
        // is copied each time it moves: sqlx's acquire future, unboxed, made each of the
        // order service's handler futures about 15 KiB.
        const SELECT: Statement = Statement::new("SELECT orders", "SELECT 1");
        /// Takes the future, so its borrow of the session ends here.
        fn size(future: impl Future) -> usize {
            let size = std::mem::size_of_val(&future);
            drop(future);
            size
        }
        let options: PgConnectOptions = "postgres://orders@127.0.0.1:1/orders"
            .parse()
            .expect("a database URL");
        let db = Database::connect_lazy(&Secret::new(options), PoolSettings::default());
        let mut session = db.session();
        let sizes = [
            size(session.fetch_one::<(i32,)>(&SELECT, |q| q)),
            size(session.fetch_optional::<(i32,)>(&SELECT, |q| q)),
            size(session.execute(&SELECT, |q| q)),
            size(db.fetch_one::<(i32,)>(&SELECT, |q| q)),
        ];
        assert!(sizes.iter().all(|&size| size <= 2048), "{sizes:?} bytes");
    }

    #[test]
    fn every_pool_setting_is_read_from_its_variable() {
        let settings = PoolSettings::from_vars(&Vars::from_pairs([
            ("DATABASE_MAX_CONNECTIONS", "4"),
            ("DATABASE_ACQUIRE_TIMEOUT_MS", "250"),
            ("DATABASE_STATEMENT_TIMEOUT_MS", "900"),
            ("DATABASE_PING_IDLE_MS", "1200"),
            ("DATABASE_RECHECK_MS", "30000"),
        ]))
        .expect("valid settings");
        assert_eq!(
            settings,
            PoolSettings {
                max_connections: 4,
                acquire_timeout: Duration::from_millis(250),
                statement_timeout: Duration::from_millis(900),
                ping_when_idle_for: Duration::from_millis(1200),
                recheck_every: Duration::from_secs(30),
            }
        );
        assert_eq!(
            PoolSettings::default().ping_when_idle_for,
            Duration::from_millis(500),
            "HikariCP's window"
        );
        let err = PoolSettings::from_vars(&Vars::from_pairs([("DATABASE_PING_IDLE_MS", "0.5s")]))
            .expect_err("not whole milliseconds");
        assert!(err.to_string().contains("DATABASE_PING_IDLE_MS"), "{err}");
    }

    #[tokio::test]
    async fn a_printed_database_shows_no_password() {
        let options: PgConnectOptions = "postgres://orders:hunter2@db:5432/orders"
            .parse()
            .expect("a database URL");
        assert!(
            format!("{options:?}").contains("hunter2"),
            "sqlx prints the password, which is why the options travel as a Secret"
        );
        let db = Database::connect_lazy(&Secret::new(options), PoolSettings::default());
        let printed = format!("{db:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("orders"),
            "the target is still shown: {printed}"
        );
    }
}
