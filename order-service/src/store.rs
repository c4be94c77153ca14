//! The order service's database access: every statement it runs, in one place.

use chrono::{DateTime, Utc};
use common::{
    api::OrderStatus,
    db::{Database, Statement},
};
use uuid::Uuid;

use crate::domain::{NewOrder, OrderId};

/// Inserts a pending order. With an idempotency key that is already taken, inserts nothing
/// and returns no row: the caller then loads the order that owns the key.
const INSERT_ORDER: Statement = Statement::new(
    "INSERT",
    "orders",
    "INSERT INTO orders (id, user_id, amount_minor, currency, status, idempotency_key, request_fingerprint, trace_id) \
     VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7) \
     ON CONFLICT (idempotency_key) DO NOTHING \
     RETURNING id",
);

const SELECT_ORDER: Statement = Statement::new(
    "SELECT",
    "orders",
    "SELECT id, user_id, amount_minor, currency, status, request_fingerprint, trace_id, created_at, updated_at \
     FROM orders WHERE id = $1",
);

const SELECT_ORDER_BY_KEY: Statement = Statement::new(
    "SELECT",
    "orders",
    "SELECT id, user_id, amount_minor, currency, status, request_fingerprint, trace_id, created_at, updated_at \
     FROM orders WHERE idempotency_key = $1",
);

const UPDATE_STATUS: Statement = Statement::new(
    "UPDATE",
    "orders",
    "UPDATE orders SET status = $2, updated_at = now() WHERE id = $1",
);

/// A row of `orders`.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    pub request_fingerprint: Option<String>,
    pub trace_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrderRow {
    pub fn status(&self) -> OrderStatus {
        // The CHECK constraint on the column admits only known statuses.
        OrderStatus::parse(&self.status).unwrap_or(OrderStatus::Pending)
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Store { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Inserts `order`; `false` when `idempotency` names a key another order already has.
    pub async fn insert(
        &self,
        order: &NewOrder,
        idempotency_key: Option<&str>,
        trace_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let key = idempotency_key.map(str::to_owned);
        let fingerprint = key.as_ref().map(|_| order.fingerprint());
        let inserted: Option<(Uuid,)> = self
            .db
            .fetch_optional(&INSERT_ORDER, |q| {
                q.bind(order.id.0)
                    .bind(order.user_id)
                    .bind(order.money.minor)
                    .bind(order.money.currency.code)
                    .bind(key)
                    .bind(fingerprint)
                    .bind(trace_id.to_owned())
            })
            .await?;
        Ok(inserted.is_some())
    }

    pub async fn get(&self, id: OrderId) -> Result<Option<OrderRow>, sqlx::Error> {
        self.db
            .fetch_optional(&SELECT_ORDER, |q| q.bind(id.0))
            .await
    }

    pub async fn get_by_idempotency_key(&self, key: &str) -> Result<Option<OrderRow>, sqlx::Error> {
        self.db
            .fetch_optional(&SELECT_ORDER_BY_KEY, |q| q.bind(key.to_owned()))
            .await
    }

    pub async fn set_status(&self, id: OrderId, status: OrderStatus) -> Result<(), sqlx::Error> {
        self.db
            .execute(&UPDATE_STATUS, |q| q.bind(id.0).bind(status.as_str()))
            .await
            .map(drop)
    }
}
