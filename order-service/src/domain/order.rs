//! An order as stored, and its state machine: what a payment answer makes of it, and what a
//! request sent again with the same `Idempotency-Key` does with it.
//!
//! ```text
//!            charged          ┌─▶ confirmed          settled: a retry is answered as before
//!  pending ──declined─────────┼─▶ payment_declined   settled: a retry is answered as before
//!            nothing charged  ├─▶ payment_failed     a retry charges again
//!            maybe charged    └─▶ payment_unknown    a retry charges again
//! ```
//!
//! Charging again is always safe: the payment service charges an order at most once, and
//! answers a charge it has already made with the payment it made.

use chrono::{DateTime, Utc};
use common::api::{Money, OrderId, OrderStatus, UserId};

use super::NewOrder;

/// An order as the database has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub money: Money,
    pub status: OrderStatus,
    /// The [`NewOrder::fingerprint`] of the request that created the order, when that request
    /// had an `Idempotency-Key`.
    pub request_fingerprint: Option<String>,
    /// The trace that created the order.
    pub trace_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the payment service's answer to a charge says about the money.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PaymentAnswer {
    Charged,
    Declined,
    /// The request never reached the payment service: nothing can have been charged.
    NothingCharged,
    /// No definite answer after the request was sent (a timeout, a 5xx): money may have moved.
    MaybeCharged,
}

impl PaymentAnswer {
    /// The status of an order whose charge was answered so.
    pub(crate) fn order_status(self) -> OrderStatus {
        match self {
            PaymentAnswer::Charged => OrderStatus::Confirmed,
            PaymentAnswer::Declined => OrderStatus::PaymentDeclined,
            PaymentAnswer::NothingCharged => OrderStatus::PaymentFailed,
            PaymentAnswer::MaybeCharged => OrderStatus::PaymentUnknown,
        }
    }
}

/// What a request does when its `Idempotency-Key` already belongs to a stored order.
#[must_use = "a retried request must be answered as decided, or it is neither charged nor refused"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// The key came first with another request: this one is refused, and nothing changes.
    KeyReused,
    /// The order is charged: answered as the first request was, and not charged again.
    Confirmed,
    /// The order's payment was declined: answered so again, and not charged again.
    Declined,
    /// The order is not settled (`pending`, `payment_failed`, `payment_unknown`): charge it
    /// again. This is the stored order, as the retried request describes it.
    ChargeAgain(NewOrder),
}

impl Order {
    /// What `request`, sent with the key this order was created with, does.
    pub(crate) fn retry(&self, request: NewOrder) -> Retry {
        if self.request_fingerprint.as_deref() != Some(request.fingerprint().as_str()) {
            return Retry::KeyReused;
        }
        match self.status {
            OrderStatus::Confirmed => Retry::Confirmed,
            OrderStatus::PaymentDeclined => Retry::Declined,
            OrderStatus::Pending | OrderStatus::PaymentFailed | OrderStatus::PaymentUnknown => {
                Retry::ChargeAgain(NewOrder {
                    id: self.id,
                    ..request
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use common::api::Currency;

    use super::*;

    fn request(amount_minor: i64) -> NewOrder {
        NewOrder {
            id: OrderId::generate(),
            user_id: UserId(1),
            money: Money {
                minor: amount_minor,
                currency: Currency::USD,
            },
            card_token: None,
        }
    }

    fn stored(status: OrderStatus) -> Order {
        let now = Utc::now();
        Order {
            id: OrderId::generate(),
            user_id: UserId(1),
            money: Money {
                minor: 4250,
                currency: Currency::USD,
            },
            status,
            request_fingerprint: Some(request(4250).fingerprint()),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_retry_is_answered_by_the_stored_orders_status() {
        // (the stored order's status, what the same request sent again does)
        let cases = [
            (OrderStatus::Confirmed, "answered as confirmed"),
            (OrderStatus::PaymentDeclined, "answered as declined"),
            (OrderStatus::Pending, "charged again"),
            (OrderStatus::PaymentFailed, "charged again"),
            (OrderStatus::PaymentUnknown, "charged again"),
        ];
        for (status, expected) in cases {
            let order = stored(status);
            let got = match order.retry(request(4250)) {
                Retry::Confirmed => "answered as confirmed",
                Retry::Declined => "answered as declined",
                Retry::ChargeAgain(again) => {
                    assert_eq!(again.id, order.id, "{status}: the stored order is charged");
                    "charged again"
                }
                Retry::KeyReused => "refused",
            };
            assert_eq!(got, expected, "{status}");
        }
    }

    #[test]
    fn a_key_sent_with_another_request_is_refused_whatever_the_status() {
        for status in [
            OrderStatus::Confirmed,
            OrderStatus::PaymentDeclined,
            OrderStatus::Pending,
            OrderStatus::PaymentFailed,
            OrderStatus::PaymentUnknown,
        ] {
            assert_eq!(
                stored(status).retry(request(4251)),
                Retry::KeyReused,
                "{status}"
            );
            let without_key = Order {
                request_fingerprint: None,
                ..stored(status)
            };
            assert_eq!(
                without_key.retry(request(4250)),
                Retry::KeyReused,
                "{status}"
            );
        }
    }

    #[test]
    fn each_payment_answer_gives_the_order_its_status() {
        let cases = [
            (PaymentAnswer::Charged, OrderStatus::Confirmed),
            (PaymentAnswer::Declined, OrderStatus::PaymentDeclined),
            (PaymentAnswer::NothingCharged, OrderStatus::PaymentFailed),
            (PaymentAnswer::MaybeCharged, OrderStatus::PaymentUnknown),
        ];
        for (answer, status) in cases {
            assert_eq!(answer.order_status(), status, "{answer:?}");
        }
    }
}
