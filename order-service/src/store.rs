//! The order service's database access: every statement it runs, in one place.
//!
//! What goes in and comes out are domain types ([`NewOrder`], [`Order`]); the rows, and the
//! mapping of a status or currency to and from its column's text, stay in here.

use chrono::{DateTime, Utc};
use common::{
    api::{Currency, Money, OrderId, OrderStatus, UnknownName, UserId},
    db::{Database, Statement, undecodable},
};

use crate::domain::{NewOrder, Order};

/// Inserts a pending order. With an idempotency key that is already taken, inserts nothing
/// and returns no row: the caller then loads the order that owns the key.
const INSERT_ORDER: Statement = Statement::new(
    "INSERT orders",
    "INSERT INTO orders (id, user_id, amount_minor, currency, status, idempotency_key, request_fingerprint, trace_id) \
     VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7) \
     ON CONFLICT (idempotency_key) DO NOTHING \
     RETURNING id",
);

const SELECT_ORDER: Statement = Statement::new(
    "SELECT orders",
    "SELECT id, user_id, amount_minor, currency, status, request_fingerprint, trace_id, created_at, updated_at \
     FROM orders WHERE id = $1",
);

const SELECT_ORDER_BY_KEY: Statement = Statement::new(
    "SELECT orders",
    "SELECT id, user_id, amount_minor, currency, status, request_fingerprint, trace_id, created_at, updated_at \
     FROM orders WHERE idempotency_key = $1",
);

const UPDATE_STATUS: Statement = Statement::new(
    "UPDATE orders",
    "UPDATE orders SET status = $2, updated_at = now() WHERE id = $1",
);

/// A row of `orders`, as the database has it; only [`Order`] leaves this module.
#[derive(sqlx::FromRow)]
struct OrderRow {
    id: OrderId,
    user_id: UserId,
    amount_minor: i64,
    currency: String,
    status: String,
    request_fingerprint: Option<String>,
    trace_id: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<OrderRow> for Order {
    type Error = sqlx::Error;

    /// Only this service writes the row, from the enums; a value none of them has is corrupt
    /// data, and reading it fails rather than guess (a guessed `pending` would be charged).
    fn try_from(row: OrderRow) -> Result<Self, Self::Error> {
        let currency = Currency::from_code(&row.currency)
            .ok_or_else(|| undecodable(UnknownName::new("currency", &row.currency)))?;
        Ok(Order {
            id: row.id,
            user_id: row.user_id,
            money: Money {
                minor: row.amount_minor,
                currency,
            },
            status: row.status.parse().map_err(undecodable)?,
            request_fingerprint: row.request_fingerprint,
            trace_id: row.trace_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Store {
    db: Database,
}

impl Store {
    pub(crate) fn new(db: Database) -> Self {
        Store { db }
    }

    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// Inserts `order`; `false` when `idempotency_key` names a key another order already
    /// has, and then nothing is inserted: the caller must answer with that order instead.
    #[must_use = "an order that was not inserted must not be charged as if it were"]
    pub(crate) async fn insert(
        &self,
        order: &NewOrder,
        idempotency_key: Option<&str>,
        trace_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let key = idempotency_key.map(str::to_owned);
        let fingerprint = key.as_ref().map(|_| order.fingerprint());
        let inserted: Option<(OrderId,)> = self
            .db
            .fetch_optional(&INSERT_ORDER, |q| {
                q.bind(order.id)
                    .bind(order.user_id)
                    .bind(order.money.minor)
                    .bind(order.money.currency.code())
                    .bind(key)
                    .bind(fingerprint)
                    .bind(trace_id.to_owned())
            })
            .await?;
        Ok(inserted.is_some())
    }

    pub(crate) async fn get(&self, id: OrderId) -> Result<Option<Order>, sqlx::Error> {
        self.db
            .fetch_optional::<OrderRow>(&SELECT_ORDER, |q| q.bind(id))
            .await?
            .map(Order::try_from)
            .transpose()
    }

    pub(crate) async fn get_by_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<Order>, sqlx::Error> {
        self.db
            .fetch_optional::<OrderRow>(&SELECT_ORDER_BY_KEY, |q| q.bind(key.to_owned()))
            .await?
            .map(Order::try_from)
            .transpose()
    }

    pub(crate) async fn set_status(
        &self,
        id: OrderId,
        status: OrderStatus,
    ) -> Result<(), sqlx::Error> {
        self.db
            .execute(&UPDATE_STATUS, |q| q.bind(id).bind(status.as_str()))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, currency: &str) -> OrderRow {
        OrderRow {
            id: OrderId::generate(),
            user_id: UserId(1),
            amount_minor: 4250,
            currency: currency.to_owned(),
            status: status.to_owned(),
            request_fingerprint: None,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_row_becomes_an_order_with_its_status_and_money() {
        let order = Order::try_from(row("payment_unknown", "JPY")).unwrap();
        assert_eq!(order.status, OrderStatus::PaymentUnknown);
        assert_eq!(order.money.currency, Currency::from_code("JPY").unwrap());
        assert_eq!(order.money.to_decimal().as_str(), "4250");
    }

    #[test]
    fn an_unknown_status_or_currency_in_a_row_is_an_error_not_a_default() {
        for (status, currency, named) in [
            ("shipped", "USD", "\"shipped\" is not a known order status"),
            ("", "USD", "\"\" is not a known order status"),
            ("pending", "XXX", "\"XXX\" is not a known currency"),
        ] {
            let err = Order::try_from(row(status, currency)).expect_err(named);
            assert!(matches!(err, sqlx::Error::Decode(_)), "{err:?}");
            assert!(err.to_string().contains(named), "{err}");
        }
    }
}
