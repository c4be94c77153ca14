//! The payment service's domain: a validated charge, a user, and why a payment is declined.

use std::fmt;

use common::api::{CARD_TOKEN_RULE, ChargeRequest, is_valid_card_token};
use uuid::Uuid;

/// A user id, as stored and as shown in spans and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a charge needs to know about a user.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct User {
    pub tier: String,
    /// The most one order may be charged, in minor units.
    pub credit_limit_minor: i64,
}

/// A charge request that passed validation: only this type reaches the database and the
/// processor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    pub order_id: Uuid,
    pub user_id: UserId,
    pub amount_minor: i64,
    pub currency: String,
    pub card_token: Option<String>,
}

impl TryFrom<ChargeRequest> for Charge {
    type Error = String;

    fn try_from(req: ChargeRequest) -> Result<Self, Self::Error> {
        if req.user_id <= 0 {
            return Err("user_id: must be a positive integer".into());
        }
        if req.amount_minor <= 0 {
            return Err("amount_minor: must be greater than zero".into());
        }
        if req.currency.len() != 3 || !req.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err("currency: must be a three-letter ISO 4217 code".into());
        }
        if let Some(token) = &req.card_token
            && !is_valid_card_token(token)
        {
            return Err(format!("card_token: {CARD_TOKEN_RULE}"));
        }
        Ok(Charge {
            order_id: req.order_id,
            user_id: UserId(req.user_id),
            amount_minor: req.amount_minor,
            currency: req.currency,
            card_token: req.card_token,
        })
    }
}

/// Why a payment was declined. Stored with the payment, shown in the 402 body and as the
/// span's `payment.decline_reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclineReason {
    UnknownUser,
    CreditLimitExceeded,
    CardDeclined,
    InsufficientFunds,
    ProcessorDeclined,
}

impl DeclineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineReason::UnknownUser => "unknown_user",
            DeclineReason::CreditLimitExceeded => "credit_limit_exceeded",
            DeclineReason::CardDeclined => "card_declined",
            DeclineReason::InsufficientFunds => "insufficient_funds",
            DeclineReason::ProcessorDeclined => "processor_declined",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeclineReason::UnknownUser,
            DeclineReason::CreditLimitExceeded,
            DeclineReason::CardDeclined,
            DeclineReason::InsufficientFunds,
            DeclineReason::ProcessorDeclined,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChargeRequest {
        ChargeRequest {
            order_id: Uuid::nil(),
            user_id: 1,
            amount_minor: 4250,
            currency: "USD".into(),
            card_token: None,
        }
    }

    #[test]
    fn a_valid_request_becomes_a_charge() {
        let charge = Charge::try_from(request()).unwrap();
        assert_eq!(charge.amount_minor, 4250);
        assert_eq!(charge.user_id, UserId(1));
    }

    #[test]
    fn each_invalid_field_is_named() {
        /// Breaks one field of a valid request.
        type Break = fn(&mut ChargeRequest);
        let cases: [(Break, &str); 5] = [
            (|r| r.user_id = 0, "user_id"),
            (|r| r.amount_minor = 0, "amount_minor"),
            (|r| r.amount_minor = -5, "amount_minor"),
            (|r| r.currency = "usd".into(), "currency"),
            (
                |r| r.card_token = Some("tok; DROP TABLE payments".into()),
                "card_token",
            ),
        ];
        for (break_it, field) in cases {
            let mut req = request();
            break_it(&mut req);
            let err = Charge::try_from(req).unwrap_err();
            assert!(err.starts_with(field), "{err} should name {field}");
        }
    }

    #[test]
    fn decline_reasons_round_trip() {
        for r in [
            "unknown_user",
            "credit_limit_exceeded",
            "card_declined",
            "insufficient_funds",
            "processor_declined",
        ] {
            assert_eq!(DeclineReason::parse(r).unwrap().as_str(), r);
        }
    }
}
