//! The order's one payment and its state machine.
//!
//! ```text
//!  (claimed) pending ──processor or service says yes──▶ succeeded   settled, for good
//!                    ──processor or service says no───▶ declined    settled, for good
//! ```
//!
//! A charge first claims the order's payment (the store inserts it as `pending`, or returns
//! the one that exists), then [`Payment::attempt`] says what to do with it: a payment for
//! other values is a conflict, a settled one is answered as recorded, a pending one is charged.
//! The processor is asked with the payment id as its idempotency key, so a pending payment
//! charged twice (a retry racing the first attempt) is charged once.

use std::{fmt, str::FromStr};

use common::api::{Money, UnknownName, UserId};
use uuid::Uuid;

use super::Charge;

/// The payment service's id for a payment: a `UUIDv7`, and the processor's idempotency key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct PaymentId(pub Uuid);

impl PaymentId {
    pub(crate) fn generate() -> Self {
        PaymentId(Uuid::now_v7())
    }
}

impl fmt::Display for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An order's payment, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Payment {
    pub id: PaymentId,
    pub user_id: UserId,
    pub money: Money,
    pub state: PaymentState,
}

/// Where a payment is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PaymentState {
    /// Claimed; the answer is not recorded yet.
    Pending,
    /// Answered; the outcome never changes.
    Settled(ChargeOutcome),
}

/// How a charge ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChargeOutcome {
    Succeeded { charge_id: String },
    Declined(DeclineReason),
}

impl ChargeOutcome {
    /// The status a payment settled with this outcome has.
    pub(crate) fn status(&self) -> PaymentStatus {
        match self {
            ChargeOutcome::Succeeded { .. } => PaymentStatus::Succeeded,
            ChargeOutcome::Declined(_) => PaymentStatus::Declined,
        }
    }
}

/// A payment's status, as the `payments.status` column has it (its `CHECK` lists the same
/// names). The answer to `POST /charge` says only how a charge ended: that is
/// `common::api::PaymentStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PaymentStatus {
    Pending,
    Succeeded,
    Declined,
}

impl PaymentStatus {
    const ALL: [PaymentStatus; 3] = [
        PaymentStatus::Pending,
        PaymentStatus::Succeeded,
        PaymentStatus::Declined,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Declined => "declined",
        }
    }
}

impl FromStr for PaymentStatus {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaymentStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownName::new("payment status", s))
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a payment was declined. Stored with the payment, shown in the 402 body and as the
/// span's `payment.decline_reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeclineReason {
    UnknownUser,
    CreditLimitExceeded,
    CardDeclined,
    InsufficientFunds,
    ProcessorDeclined,
}

impl DeclineReason {
    const ALL: [DeclineReason; 5] = [
        DeclineReason::UnknownUser,
        DeclineReason::CreditLimitExceeded,
        DeclineReason::CardDeclined,
        DeclineReason::InsufficientFunds,
        DeclineReason::ProcessorDeclined,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeclineReason::UnknownUser => "unknown_user",
            DeclineReason::CreditLimitExceeded => "credit_limit_exceeded",
            DeclineReason::CardDeclined => "card_declined",
            DeclineReason::InsufficientFunds => "insufficient_funds",
            DeclineReason::ProcessorDeclined => "processor_declined",
        }
    }
}

impl FromStr for DeclineReason {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeclineReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == s)
            .ok_or_else(|| UnknownName::new("decline reason", s))
    }
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a charge does with the order's payment it claimed.
#[must_use = "a claimed payment must be charged, replayed or refused as decided"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The payment is for another user, amount or currency: the charge is refused.
    Conflict,
    /// The payment is settled: its recorded outcome is the answer, and nothing is charged.
    Replay(ChargeOutcome),
    /// The payment is pending: decide it, and settle it with the outcome.
    Charge,
}

impl Payment {
    /// What `charge` does with this payment, the order's one.
    pub(crate) fn attempt(&self, charge: &Charge) -> Attempt {
        // The same order id with other values is not a retry but a different charge.
        if self.user_id != charge.user_id || self.money != charge.money {
            return Attempt::Conflict;
        }
        match &self.state {
            PaymentState::Settled(outcome) => Attempt::Replay(outcome.clone()),
            PaymentState::Pending => Attempt::Charge,
        }
    }
}

#[cfg(test)]
mod tests {
    use common::api::{Currency, OrderId};

    use super::*;

    fn charge() -> Charge {
        Charge {
            order_id: OrderId::generate(),
            user_id: UserId(1),
            money: Money {
                minor: 4250,
                currency: Currency::USD,
            },
            card_token: None,
        }
    }

    fn payment(state: PaymentState) -> Payment {
        Payment {
            id: PaymentId::generate(),
            user_id: UserId(1),
            money: charge().money,
            state,
        }
    }

    #[test]
    fn a_pending_payment_is_charged_and_a_settled_one_replayed() {
        let succeeded = ChargeOutcome::Succeeded {
            charge_id: "ch_1".into(),
        };
        let declined = ChargeOutcome::Declined(DeclineReason::CardDeclined);
        let cases = [
            (PaymentState::Pending, Attempt::Charge),
            (
                PaymentState::Settled(succeeded.clone()),
                Attempt::Replay(succeeded),
            ),
            (
                PaymentState::Settled(declined.clone()),
                Attempt::Replay(declined),
            ),
        ];
        for (state, expected) in cases {
            assert_eq!(
                payment(state.clone()).attempt(&charge()),
                expected,
                "{state:?}"
            );
        }
    }

    #[test]
    fn a_payment_for_other_values_is_a_conflict_whatever_its_state() {
        /// Changes one value of the stored payment.
        type Change = fn(&mut Payment);
        let changes: [(&str, Change); 3] = [
            ("another user", |p| p.user_id = UserId(2)),
            ("another amount", |p| p.money.minor = 4251),
            ("another currency", |p| {
                p.money.currency = Currency::from_code("EUR").unwrap();
            }),
        ];
        for (what, change) in changes {
            for state in [
                PaymentState::Pending,
                PaymentState::Settled(ChargeOutcome::Declined(DeclineReason::UnknownUser)),
            ] {
                let mut stored = payment(state);
                change(&mut stored);
                assert_eq!(stored.attempt(&charge()), Attempt::Conflict, "{what}");
            }
        }
    }

    #[test]
    fn statuses_and_decline_reasons_round_trip_and_unknown_names_are_errors() {
        for status in PaymentStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
        }
        for reason in DeclineReason::ALL {
            assert_eq!(reason.as_str().parse(), Ok(reason));
        }
        assert_eq!(
            "refunded".parse::<PaymentStatus>(),
            Err(UnknownName::new("payment status", "refunded"))
        );
        assert_eq!(
            "stolen_card".parse::<DeclineReason>(),
            Err(UnknownName::new("decline reason", "stolen_card"))
        );
    }
}
