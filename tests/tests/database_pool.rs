//! What the services' pool checks before it hands out a connection. One idle for
//! `DATABASE_PING_IDLE_MS` ([`PoolSettings::ping_when_idle_for`]) or longer is pinged first, so one the server closed in the meantime
//! is replaced before a statement meets it. One used moments ago is handed out as it is: no
//! statement pays a second round trip under load. A statement that meets a connection closed
//! within that window fails as unavailable (the services answer 503), and the next statement
//! gets a new connection. Statements of one [`Session`] share a connection until the session
//! ends, or until one of them fails. A connection whose statements completed is kept for the
//! next session without sqlx's ping on the way back, unless a session is waiting on sqlx's pool
//! for one, or it has been out of sqlx's pool for `DATABASE_RECHECK_MS`; one whose statement
//! was cut off goes through that ping.

use std::time::{Duration, Instant};

use common::{
    config::Secret,
    db::{Database, PoolSettings, Session, Statement, is_unavailable},
};
use sqlx::postgres::PgConnectOptions;
use testkit::db::TestDatabase;

const BACKEND_PID: Statement = Statement::new("SELECT backend", "SELECT pg_backend_pid()");

const SLEEP: Statement = Statement::new("SELECT sleep", "SELECT pg_sleep(2)");

/// A pool of one connection on `database`, as the services build theirs.
fn pool_of_one(database: &TestDatabase) -> Database {
    pool_of_one_with(database, PoolSettings::default())
}

fn pool_of_one_with(database: &TestDatabase, settings: PoolSettings) -> Database {
    let options: PgConnectOptions = database.url().parse().expect("the test database's URL");
    Database::connect_lazy(
        &Secret::new(options),
        PoolSettings {
            max_connections: 1,
            ..settings
        },
    )
}

/// The server process behind the connection the statement ran on.
async fn backend(db: &Database) -> Result<i32, sqlx::Error> {
    db.fetch_one(&BACKEND_PID, |query| query)
        .await
        .map(|(pid,): (i32,)| pid)
}

/// The server process behind the connection the session's statement ran on.
async fn session_backend(session: &mut Session<'_>) -> Result<i32, sqlx::Error> {
    session
        .fetch_one(&BACKEND_PID, |query| query)
        .await
        .map(|(pid,): (i32,)| pid)
}

/// Waits until the pool's one connection is ready for the next statement, and returns about
/// when it got there. A statement's connection is kept warm at once, but one that goes back to
/// sqlx's pool gets there in a task of its own, after a ping; closing the connection during
/// that ping would test something else.
async fn until_idle(db: &Database) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.num_idle() == 0 {
        assert!(
            Instant::now() < deadline,
            "the connection never came back to the pool"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Instant::now()
}

/// Closes the connection served by `pid` from the server's side, as a restart or a proxy's
/// idle timeout would, and waits until that process is gone.
async fn close_from_the_server(database: &TestDatabase, pid: i32) {
    let signalled: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(database.pool())
        .await
        .expect("terminating the backend");
    assert!(signalled, "backend {pid} was not there to terminate");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                .bind(pid)
                .fetch_one(database.pool())
                .await
                .expect("reading pg_stat_activity");
        if !alive {
            return;
        }
        assert!(Instant::now() < deadline, "backend {pid} did not exit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_connection_closed_while_it_idled_is_replaced_before_a_statement_meets_it() {
    let database = TestDatabase::create().await;
    let db = pool_of_one(&database);
    let first = backend(&db).await.expect("the first statement");
    until_idle(&db).await;

    close_from_the_server(&database, first).await;
    tokio::time::sleep(PoolSettings::default().ping_when_idle_for + Duration::from_millis(100))
        .await;

    let second = backend(&db)
        .await
        .expect("an idle connection is pinged before it is handed out, and a dead one replaced");
    assert_ne!(first, second, "the statement ran on a new connection");
}

#[tokio::test]
async fn a_connection_used_moments_ago_is_not_pinged_and_a_broken_one_is_not_kept() {
    let database = TestDatabase::create().await;
    let db = pool_of_one(&database);
    let first = backend(&db).await.expect("the first statement");

    let idle_since = until_idle(&db).await;

    // Well within the window: the pool hands the connection out unchecked, so the statement
    // is what finds it closed (with a ping before it, it would have succeeded).
    close_from_the_server(&database, first).await;
    let result = backend(&db).await;
    // Half the window: `idle_since` is up to a poll later than the connection went idle.
    assert!(
        idle_since.elapsed() < PoolSettings::default().ping_when_idle_for / 2,
        "the test took too long to show the window ({:?})",
        idle_since.elapsed()
    );
    let error =
        result.expect_err("the statement met the closed connection: nothing pinged it first");
    assert!(
        is_unavailable(&error),
        "a closed connection is a 503, not a 500: {error:?}"
    );

    let second = backend(&db)
        .await
        .expect("the broken connection was closed, and the next statement got a new one");
    assert_ne!(first, second);
}

#[tokio::test]
async fn statements_of_a_session_share_one_connection_until_the_session_ends() {
    let database = TestDatabase::create().await;
    let db = pool_of_one(&database);
    let mut session = db.session();
    assert_eq!(
        db.pool().size(),
        0,
        "a session takes no connection until its first statement"
    );

    let first = session_backend(&mut session)
        .await
        .expect("the first statement");
    let second = session_backend(&mut session)
        .await
        .expect("the second statement");
    assert_eq!(first, second, "both ran on the session's connection");
    assert_eq!(db.num_idle(), 0, "the session still holds it");

    drop(session);
    assert_eq!(
        (db.num_idle(), db.pool().num_idle()),
        (1, 0),
        "kept for the next session at once, not sent through sqlx's ping"
    );
    assert_eq!(
        backend(&db).await.expect("a statement after the session"),
        first,
        "the connection went back to the pool, alive"
    );
}

#[tokio::test]
async fn a_session_lets_a_connection_go_when_a_statement_on_it_fails() {
    let database = TestDatabase::create().await;
    let db = pool_of_one(&database);
    let mut session = db.session();
    let first = session_backend(&mut session)
        .await
        .expect("the first statement");

    close_from_the_server(&database, first).await;
    let error = session_backend(&mut session)
        .await
        .expect_err("the statement met the closed connection");
    assert!(is_unavailable(&error), "{error:?}");

    let next = session_backend(&mut session)
        .await
        .expect("the session's next statement gets a connection the pool checked");
    assert_ne!(first, next, "the broken connection was not kept");
}

#[tokio::test]
async fn a_session_waiting_for_the_pool_gets_the_connection_the_last_session_lets_go() {
    let database = TestDatabase::create().await;
    // Were the connection kept warm while another session waits on sqlx's pool, that session
    // would wait until it timed out.
    let db = pool_of_one_with(
        &database,
        PoolSettings {
            acquire_timeout: Duration::from_secs(3),
            ..PoolSettings::default()
        },
    );
    let mut holder = db.session();
    let held = session_backend(&mut holder)
        .await
        .expect("the first statement");

    let waiter = tokio::spawn({
        let db = db.clone();
        async move { backend(&db).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the pool's one connection is held");
    let released = Instant::now();
    drop(holder);

    let got = waiter
        .await
        .expect("the waiting statement's task")
        .expect("the waiting statement got the connection the session let go");
    assert_eq!(got, held);
    assert!(
        released.elapsed() < Duration::from_secs(2),
        "handed over at once, not after a timeout ({:?})",
        released.elapsed()
    );
}

#[tokio::test]
async fn a_statement_cut_off_midway_leaves_its_connection_to_sqlx_not_to_the_next_statement() {
    let database = TestDatabase::create().await;
    let db = pool_of_one(&database);
    let cut_off = tokio::time::timeout(Duration::from_millis(100), db.execute(&SLEEP, |q| q)).await;
    assert!(cut_off.is_err(), "the statement was still running");
    assert_eq!(
        db.num_idle(),
        0,
        "not kept warm: sqlx's ping waits out what the server still sends for it"
    );
    backend(&db)
        .await
        .expect("the next statement runs on a connection the pool has checked");
}

#[tokio::test]
async fn a_connection_in_steady_use_still_goes_back_through_sqlx_s_check() {
    let database = TestDatabase::create().await;
    let settings = PoolSettings {
        recheck_every: Duration::from_millis(300),
        ..PoolSettings::default()
    };
    assert!(settings.recheck_every < settings.ping_when_idle_for);
    let db = pool_of_one_with(&database, settings);
    let first = backend(&db).await.expect("the first statement");
    assert_eq!(db.pool().num_idle(), 0, "kept for the next statement");

    tokio::time::sleep(Duration::from_millis(350)).await;
    let again = backend(&db).await.expect("the second statement");
    assert_eq!(
        again, first,
        "used within the ping window: handed out as it was"
    );

    // Out of sqlx's pool for longer than `recheck_every` when that statement ended: back to
    // sqlx, which pings it on the way in.
    let deadline = Instant::now() + Duration::from_secs(5);
    while db.pool().num_idle() == 0 {
        assert!(
            Instant::now() < deadline,
            "the connection never went back to sqlx's pool"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
