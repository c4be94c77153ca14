//! The payment service's database access: every statement it runs, in one place.
//!
//! What goes in and comes out are domain types ([`Charge`], [`Payment`], [`User`]); the rows,
//! and the mapping of a status, reason, tier or currency to and from its column's text, stay
//! in here.

use common::{
    api::{Currency, Money, UnknownName, UserId},
    db::{self, Database, Statement, undecodable},
    signing::SignatureError,
};
use uuid::Uuid;

use crate::domain::{Charge, ChargeOutcome, Payment, PaymentId, PaymentState, PaymentStatus, User};

const SELECT_USER: Statement = Statement::new(
    "SELECT users",
    "SELECT tier, credit_limit_minor FROM users WHERE id = $1",
);

/// Claims the order's one payment: inserts it as `pending`, or returns the payment that
/// already exists for the order (a retry, or a concurrent duplicate, which waits here for the
/// first insert to commit). The no-op update makes `RETURNING` return the existing row.
const CLAIM_PAYMENT: Statement = Statement::new(
    "INSERT payments",
    "INSERT INTO payments (id, order_id, user_id, amount_minor, currency, status) \
     VALUES ($1, $2, $3, $4, $5, 'pending') \
     ON CONFLICT (order_id) DO UPDATE SET updated_at = payments.updated_at \
     RETURNING id, user_id, amount_minor, currency, status, processor_charge_id, decline_reason",
);

/// Records the processor's answer. Only a pending payment is settled: a payment's outcome,
/// once recorded, never changes.
const SETTLE_PAYMENT: Statement = Statement::new(
    "UPDATE payments",
    "UPDATE payments SET status = $2, processor_charge_id = $3, decline_reason = $4, updated_at = now() \
     WHERE id = $1 AND status = 'pending'",
);

/// Records a charge refused for its signature. Never touches `payments`: see the migration.
const RECORD_REFUSED_CHARGE: Statement = Statement::new(
    "INSERT refused_charges",
    "INSERT INTO refused_charges (id, order_id, user_id, amount_minor, currency, reason, trace_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)",
);

/// A row of `users`, as the database has it.
#[derive(sqlx::FromRow)]
struct UserRow {
    tier: String,
    credit_limit_minor: i64,
}

impl TryFrom<UserRow> for User {
    type Error = sqlx::Error;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        Ok(User {
            tier: row.tier.parse().map_err(undecodable)?,
            credit_limit_minor: row.credit_limit_minor,
        })
    }
}

/// A row of `payments`, as the database has it; only [`Payment`] leaves this module.
#[derive(sqlx::FromRow)]
struct PaymentRow {
    id: PaymentId,
    user_id: UserId,
    amount_minor: i64,
    currency: String,
    status: String,
    processor_charge_id: Option<String>,
    decline_reason: Option<String>,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = sqlx::Error;

    /// Only this service writes the row, from the enums; a value none of them has, or a
    /// settled payment without its outcome, is corrupt data, and reading it fails rather than
    /// guess (a guessed `pending` would be charged again).
    fn try_from(row: PaymentRow) -> Result<Self, Self::Error> {
        let currency = Currency::from_code(&row.currency)
            .ok_or_else(|| undecodable(UnknownName::new("currency", &row.currency)))?;
        let status: PaymentStatus = row.status.parse().map_err(undecodable)?;
        let state = match (status, row.processor_charge_id, row.decline_reason) {
            (PaymentStatus::Pending, _, _) => PaymentState::Pending,
            (PaymentStatus::Succeeded, Some(charge_id), _) => {
                PaymentState::Settled(ChargeOutcome::Succeeded { charge_id })
            }
            (PaymentStatus::Declined, _, Some(reason)) => PaymentState::Settled(
                ChargeOutcome::Declined(reason.parse().map_err(undecodable)?),
            ),
            (status, _, _) => {
                return Err(sqlx::Error::Decode(
                    format!("a {status} payment without its outcome").into(),
                ));
            }
        };
        Ok(Payment {
            id: row.id,
            user_id: row.user_id,
            money: Money {
                minor: row.amount_minor,
                currency,
            },
            state,
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

    /// Statements that run back to back on one connection (see [`db::Session`]).
    pub(crate) fn session(&self) -> Session<'_> {
        Session(self.db.session())
    }

    /// Records that `charge` was refused, and why; `trace_id` leads to the request's trace.
    pub(crate) async fn record_refused(
        &self,
        charge: &Charge,
        reason: SignatureError,
        trace_id: &str,
    ) -> Result<(), sqlx::Error> {
        self.db
            .execute(&RECORD_REFUSED_CHARGE, |q| {
                q.bind(Uuid::now_v7())
                    .bind(charge.order_id)
                    .bind(charge.user_id)
                    .bind(charge.money.minor)
                    .bind(charge.money.currency.code())
                    .bind(reason.as_str())
                    .bind(trace_id.to_owned())
            })
            .await
            .map(drop)
    }

    /// Records `outcome` for a pending payment; a settled one keeps the outcome it has.
    pub(crate) async fn settle(
        &self,
        payment_id: PaymentId,
        outcome: &ChargeOutcome,
    ) -> Result<(), sqlx::Error> {
        let status = outcome.status().as_str();
        let (charge_id, reason) = match outcome {
            ChargeOutcome::Succeeded { charge_id } => (Some(charge_id.clone()), None),
            ChargeOutcome::Declined(reason) => (None, Some(reason.as_str())),
        };
        self.db
            .execute(&SETTLE_PAYMENT, |q| {
                q.bind(payment_id).bind(status).bind(charge_id).bind(reason)
            })
            .await
            .map(drop)
    }
}

/// The statements a charge runs back to back, before the processor is asked: the user, then
/// the claim, on one connection.
pub(crate) struct Session<'a>(db::Session<'a>);

impl Session<'_> {
    pub(crate) async fn user(&mut self, id: UserId) -> Result<Option<User>, sqlx::Error> {
        self.0
            .fetch_optional::<UserRow>(&SELECT_USER, |q| q.bind(id))
            .await?
            .map(User::try_from)
            .transpose()
    }

    /// The order's one payment: a new pending one with `payment_id`, or the one it already has.
    pub(crate) async fn claim(
        &mut self,
        payment_id: PaymentId,
        charge: &Charge,
    ) -> Result<Payment, sqlx::Error> {
        self.0
            .fetch_one::<PaymentRow>(&CLAIM_PAYMENT, |q| {
                q.bind(payment_id)
                    .bind(charge.order_id)
                    .bind(charge.user_id)
                    .bind(charge.money.minor)
                    .bind(charge.money.currency.code())
            })
            .await?
            .try_into()
    }
}

#[cfg(test)]
mod tests {
    use common::api::CustomerTier;

    use super::*;
    use crate::domain::DeclineReason;

    fn row(status: &str, charge_id: Option<&str>, reason: Option<&str>) -> PaymentRow {
        PaymentRow {
            id: PaymentId::generate(),
            user_id: UserId(1),
            amount_minor: 4250,
            currency: "USD".to_owned(),
            status: status.to_owned(),
            processor_charge_id: charge_id.map(str::to_owned),
            decline_reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn a_row_becomes_a_payment_in_its_state() {
        let cases = [
            (row("pending", None, None), PaymentState::Pending),
            (
                row("succeeded", Some("ch_1"), None),
                PaymentState::Settled(ChargeOutcome::Succeeded {
                    charge_id: "ch_1".into(),
                }),
            ),
            (
                row("declined", None, Some("credit_limit_exceeded")),
                PaymentState::Settled(ChargeOutcome::Declined(DeclineReason::CreditLimitExceeded)),
            ),
        ];
        for (row, state) in cases {
            assert_eq!(Payment::try_from(row).unwrap().state, state);
        }
    }

    #[test]
    fn an_unknown_status_reason_or_tier_in_a_row_is_an_error_not_a_default() {
        for (row, named) in [
            (
                row("refunded", None, None),
                "\"refunded\" is not a known payment status",
            ),
            (
                row("declined", None, Some("stolen_card")),
                "\"stolen_card\" is not a known decline reason",
            ),
            (
                row("succeeded", None, None),
                "a succeeded payment without its outcome",
            ),
        ] {
            let err = Payment::try_from(row).expect_err(named);
            assert!(matches!(err, sqlx::Error::Decode(_)), "{err:?}");
            assert!(err.to_string().contains(named), "{err}");
        }
        let user = |tier: &str| {
            User::try_from(UserRow {
                tier: tier.to_owned(),
                credit_limit_minor: 100,
            })
        };
        assert_eq!(user("gold").unwrap().tier, CustomerTier::Gold);
        assert!(user("diamond").is_err());
    }
}
