//! A validated charge, and the declines the service makes itself before asking the processor.
//!
//! Parse, don't validate: a [`ChargeRequest`] becomes a [`Charge`] through `TryFrom`, and only
//! a `Charge` reaches the database and the processor: a positive user, a positive amount in a
//! known currency, a well-formed card token.

use common::{
    api::{
        CARD_TOKEN_RULE, ChargeRequest, Currency, Money, OrderId, UserId, ValidationError,
        is_valid_card_token,
    },
    error::echo,
};

use super::{DeclineReason, User};

/// A charge request that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Charge {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub money: Money,
    pub card_token: Option<String>,
}

impl TryFrom<ChargeRequest> for Charge {
    type Error = ValidationError;

    fn try_from(req: ChargeRequest) -> Result<Self, Self::Error> {
        if req.user_id.0 <= 0 {
            return Err(ValidationError::new(
                "user_id",
                "must be a positive integer",
            ));
        }
        if req.amount_minor <= 0 {
            return Err(ValidationError::new(
                "amount_minor",
                "must be greater than zero",
            ));
        }
        let currency = Currency::from_code(&req.currency).ok_or_else(|| {
            ValidationError::new(
                "currency",
                format!("{:?} is not a supported ISO 4217 code", echo(&req.currency)),
            )
        })?;
        if let Some(token) = &req.card_token
            && !is_valid_card_token(token)
        {
            return Err(ValidationError::new("card_token", CARD_TOKEN_RULE));
        }
        Ok(Charge {
            order_id: req.order_id,
            user_id: req.user_id,
            money: Money {
                minor: req.amount_minor,
                currency,
            },
            card_token: req.card_token,
        })
    }
}

impl Charge {
    /// Declines what the service can decline itself: a user it does not know, or an amount
    /// over the user's credit limit. `Ok` means the processor decides.
    pub(crate) fn screen(&self, user: Option<&User>) -> Result<(), DeclineReason> {
        let Some(user) = user else {
            return Err(DeclineReason::UnknownUser);
        };
        if self.money.minor > user.credit_limit_minor {
            return Err(DeclineReason::CreditLimitExceeded);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use common::api::CustomerTier;
    use uuid::Uuid;

    use super::*;

    fn request() -> ChargeRequest {
        ChargeRequest {
            order_id: OrderId(Uuid::nil()),
            user_id: UserId(1),
            amount_minor: 4250,
            currency: "USD".into(),
            card_token: None,
        }
    }

    #[test]
    fn a_valid_request_becomes_a_charge() {
        let charge = Charge::try_from(request()).unwrap();
        assert_eq!(charge.money.minor, 4250);
        assert_eq!(charge.money.currency, Currency::USD);
        assert_eq!(charge.user_id, UserId(1));
    }

    #[test]
    fn each_invalid_field_is_named() {
        /// Breaks one field of a valid request.
        type Break = fn(&mut ChargeRequest);
        let cases: [(Break, &str); 6] = [
            (|r| r.user_id = UserId(0), "user_id"),
            (|r| r.amount_minor = 0, "amount_minor"),
            (|r| r.amount_minor = -5, "amount_minor"),
            (|r| r.currency = "usd".into(), "currency"),
            (|r| r.currency = "XYZ".into(), "currency"),
            (
                |r| r.card_token = Some("tok; DROP TABLE payments".into()),
                "card_token",
            ),
        ];
        for (break_it, field) in cases {
            let mut req = request();
            break_it(&mut req);
            let err = Charge::try_from(req).unwrap_err();
            assert_eq!(err.field, field, "{err} should name {field}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }

    #[test]
    fn an_unknown_user_or_an_amount_over_the_credit_limit_is_declined_here() {
        let charge = Charge::try_from(request()).unwrap();
        let user = |credit_limit_minor| User {
            tier: CustomerTier::Gold,
            credit_limit_minor,
        };
        // (the user, the decision)
        let cases = [
            (None, Err(DeclineReason::UnknownUser)),
            (Some(user(4249)), Err(DeclineReason::CreditLimitExceeded)),
            (Some(user(4250)), Ok(())),
            (Some(user(500_000)), Ok(())),
        ];
        for (user, expected) in cases {
            assert_eq!(charge.screen(user.as_ref()), expected, "{user:?}");
        }
    }
}
