//! The payment service's database access: every statement it runs, in one place.

use common::{
    db::{Database, Statement},
    signing::SignatureError,
};
use uuid::Uuid;

use crate::{
    domain::{Charge, DeclineReason, User, UserId},
    processor::ChargeOutcome,
};

const SELECT_USER: Statement = Statement::new(
    "SELECT",
    "users",
    "SELECT tier, credit_limit_minor FROM users WHERE id = $1",
);

/// Claims the order's one payment: inserts it as `pending`, or returns the payment that
/// already exists for the order (a retry, or a concurrent duplicate, which waits here for the
/// first insert to commit). The no-op update makes `RETURNING` return the existing row.
const CLAIM_PAYMENT: Statement = Statement::new(
    "INSERT",
    "payments",
    "INSERT INTO payments (id, order_id, user_id, amount_minor, currency, status) \
     VALUES ($1, $2, $3, $4, $5, 'pending') \
     ON CONFLICT (order_id) DO UPDATE SET updated_at = payments.updated_at \
     RETURNING id, user_id, amount_minor, currency, status, processor_charge_id, decline_reason",
);

/// Records the processor's answer. Only a pending payment is settled: a payment's outcome,
/// once recorded, never changes.
const SETTLE_PAYMENT: Statement = Statement::new(
    "UPDATE",
    "payments",
    "UPDATE payments SET status = $2, processor_charge_id = $3, decline_reason = $4, updated_at = now() \
     WHERE id = $1 AND status = 'pending'",
);

/// Records a charge refused for its signature. Never touches `payments`: see the migration.
const RECORD_REFUSED_CHARGE: Statement = Statement::new(
    "INSERT",
    "refused_charges",
    "INSERT INTO refused_charges (id, order_id, user_id, amount_minor, currency, reason, trace_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)",
);

/// A row of `payments`.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: Uuid,
    pub user_id: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    pub processor_charge_id: Option<String>,
    pub decline_reason: Option<String>,
}

impl PaymentRow {
    /// The recorded outcome, or `None` while the payment is pending.
    pub fn outcome(&self) -> Option<ChargeOutcome> {
        match (
            self.status.as_str(),
            &self.processor_charge_id,
            &self.decline_reason,
        ) {
            ("succeeded", Some(charge_id), _) => Some(ChargeOutcome::Succeeded {
                charge_id: charge_id.clone(),
            }),
            ("declined", _, Some(reason)) => {
                DeclineReason::parse(reason).map(ChargeOutcome::Declined)
            }
            _ => None,
        }
    }

    /// Whether this payment is for the same charge (a retry) rather than a different one
    /// reusing the order id.
    pub fn matches(&self, charge: &Charge) -> bool {
        self.user_id == charge.user_id.0
            && self.amount_minor == charge.amount_minor
            && self.currency == charge.currency
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

    pub async fn user(&self, id: UserId) -> Result<Option<User>, sqlx::Error> {
        self.db.fetch_optional(&SELECT_USER, |q| q.bind(id.0)).await
    }

    pub async fn claim(
        &self,
        payment_id: Uuid,
        charge: &Charge,
    ) -> Result<PaymentRow, sqlx::Error> {
        self.db
            .fetch_one(&CLAIM_PAYMENT, |q| {
                q.bind(payment_id)
                    .bind(charge.order_id)
                    .bind(charge.user_id.0)
                    .bind(charge.amount_minor)
                    .bind(charge.currency.clone())
            })
            .await
    }

    /// Records that `charge` was refused, and why; `trace_id` leads to the request's trace.
    pub async fn record_refused(
        &self,
        charge: &Charge,
        reason: SignatureError,
        trace_id: &str,
    ) -> Result<(), sqlx::Error> {
        self.db
            .execute(&RECORD_REFUSED_CHARGE, |q| {
                q.bind(Uuid::now_v7())
                    .bind(charge.order_id)
                    .bind(charge.user_id.0)
                    .bind(charge.amount_minor)
                    .bind(charge.currency.clone())
                    .bind(reason.as_str())
                    .bind(trace_id.to_owned())
            })
            .await
            .map(drop)
    }

    pub async fn settle(
        &self,
        payment_id: Uuid,
        outcome: &ChargeOutcome,
    ) -> Result<(), sqlx::Error> {
        let (status, charge_id, reason) = match outcome {
            ChargeOutcome::Succeeded { charge_id } => ("succeeded", Some(charge_id.clone()), None),
            ChargeOutcome::Declined(reason) => ("declined", None, Some(reason.as_str())),
        };
        self.db
            .execute(&SETTLE_PAYMENT, |q| {
                q.bind(payment_id).bind(status).bind(charge_id).bind(reason)
            })
            .await
            .map(drop)
    }
}
