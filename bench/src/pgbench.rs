//! The database-only ceiling: the flow's statements, run by `pgbench` straight against
//! Postgres at the same concurrency as the load on the services.
//!
//! The script is the statements a confirmed order costs, in the order the services send
//! them, each in its own transaction as the services run them (autocommit): the order-service
//! inserts the order, the payment-service reads the user, claims and settles the payment, and
//! the order-service marks the order confirmed. Prepared (`-M prepared`), as sqlx prepares
//! them.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context, bail};

/// One confirmed order, in SQL. `\gset` keeps the returned ids for the next statements.
pub(crate) const SCRIPT: &str = r"\set user_id random(1, 4)
\set cents random(1000, 4999)
INSERT INTO orders (id, user_id, amount_minor, currency, status, idempotency_key, request_fingerprint, trace_id) VALUES (gen_random_uuid(), :user_id, :cents, 'USD', 'pending', NULL, NULL, '4bf92f3577b34da6a3ce929d0e0e4736') ON CONFLICT (idempotency_key) DO NOTHING RETURNING id AS order_id \gset
SELECT tier, credit_limit_minor FROM users WHERE id = :user_id;
INSERT INTO payments (id, order_id, user_id, amount_minor, currency, status) VALUES (gen_random_uuid(), :order_id, :user_id, :cents, 'USD', 'pending') ON CONFLICT (order_id) DO UPDATE SET updated_at = payments.updated_at RETURNING id AS payment_id, amount_minor, currency, status AS payment_status, processor_charge_id, decline_reason \gset
UPDATE payments SET status = 'succeeded', processor_charge_id = 'ch_bench', decline_reason = NULL, updated_at = now() WHERE id = :payment_id AND status = 'pending';
UPDATE orders SET status = 'confirmed', updated_at = now() WHERE id = :order_id;
";

/// `pgbench` on the PATH, or in the Debian layout's versioned directory.
pub(crate) fn find() -> Option<std::path::PathBuf> {
    let on_path = Command::new("pgbench")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return Some("pgbench".into());
    }
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin/pgbench")))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

/// What one pgbench run did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Run {
    /// Transactions (orders) a second.
    pub tps: f64,
    /// Transactions it completed.
    pub transactions: u64,
}

/// Runs the script against `database_url` with `clients` connections for `duration`.
pub(crate) fn run(
    pgbench: &Path,
    database_url: &str,
    clients: usize,
    duration: Duration,
    work: &Path,
) -> anyhow::Result<Run> {
    let script = work.join("order.sql");
    std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    let output = Command::new(pgbench)
        .arg("--no-vacuum")
        .args(["--protocol", "prepared"])
        .args(["--client", &clients.to_string()])
        .args(["--jobs", "2"])
        .args(["--time", &duration.as_secs().max(1).to_string()])
        .arg("--file")
        .arg(&script)
        .arg(database_url)
        .output()
        .with_context(|| format!("running {}", pgbench.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let tps =
        parse_tps(&stdout).with_context(|| format!("no tps in pgbench's output:\n{stdout}"))?;
    let transactions = parse_transactions(&stdout)
        .with_context(|| format!("no transaction count in pgbench's output:\n{stdout}"))?;
    Ok(Run { tps, transactions })
}

/// The `number of transactions actually processed: N` line (`N/M` with a transaction limit).
fn parse_transactions(output: &str) -> Option<u64> {
    output.lines().find_map(|line| {
        let rest = line
            .trim()
            .strip_prefix("number of transactions actually processed: ")?;
        rest.split('/').next()?.trim().parse().ok()
    })
}

/// The `tps = N (without initial connection time)` line.
fn parse_tps(output: &str) -> Option<f64> {
    output.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("tps = ")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tps_is_read_from_pgbench_output() {
        let output = "transaction type: order.sql\nscaling factor: 1\nnumber of clients: 16\n\
                      number of failed transactions: 0 (0.000%)\n\
                      latency average = 4.389 ms\n\
                      initial connection time = 18.044 ms\n\
                      tps = 3645.123456 (without initial connection time)\n";
        assert_eq!(parse_tps(output), Some(3_645.123_456));
        assert_eq!(parse_tps("pgbench: error"), None);
        let counted = "number of transactions actually processed: 29161\n";
        assert_eq!(parse_transactions(counted), Some(29_161));
        assert_eq!(
            parse_transactions("number of transactions actually processed: 100/100\n"),
            Some(100)
        );
        assert_eq!(parse_transactions(output), None);
    }
}
