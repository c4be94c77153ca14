//! A validated order: what `POST /orders` becomes before anything is stored or charged.
//!
//! Parse, don't validate: a [`CreateOrderRequest`] from the wire becomes a [`NewOrder`] in
//! [`NewOrder::parse`], and everything after that (the database, the payment call) only
//! ever sees a `NewOrder`: positive amount in minor units of a known currency, positive user.

use common::{
    api::{
        AmountError, CARD_TOKEN_RULE, CreateOrderRequest, Currency, Money, OrderId, UserId,
        ValidationError, is_valid_card_token,
    },
    error::echo,
};

/// The most a single order may be, in major units of its currency.
const MAX_ORDER_MAJOR_UNITS: i64 = 1_000_000;

/// An order that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NewOrder {
    pub id: OrderId,
    pub user_id: UserId,
    pub money: Money,
    pub card_token: Option<String>,
}

impl NewOrder {
    pub(crate) fn parse(id: OrderId, req: &CreateOrderRequest) -> Result<Self, ValidationError> {
        if req.user_id.0 <= 0 {
            return Err(ValidationError::new(
                "user_id",
                "must be a positive integer",
            ));
        }
        let currency = match req.currency.as_deref() {
            None => Currency::USD,
            Some(code) => Currency::from_code(code).ok_or_else(|| {
                ValidationError::new(
                    "currency",
                    format!(
                        "{:?} is not a supported ISO 4217 code (supported: {})",
                        echo(code),
                        Currency::ALL.map(Currency::code).join(", ")
                    ),
                )
            })?,
        };
        let money = Money::from_decimal(&req.amount, currency).map_err(|e| match e {
            AmountError::TooPrecise { max_decimals } => ValidationError::new(
                "amount",
                format!("{currency} allows at most {max_decimals} decimal places"),
            ),
            AmountError::TooLarge => too_large(currency),
            AmountError::NotANumber | AmountError::ExponentOutOfRange => {
                ValidationError::new("amount", e.to_string())
            }
        })?;
        if money.minor <= 0 {
            return Err(ValidationError::new("amount", "must be greater than zero"));
        }
        if money.minor > MAX_ORDER_MAJOR_UNITS * 10_i64.pow(currency.exponent()) {
            return Err(too_large(currency));
        }
        if let Some(token) = &req.card_token
            && !is_valid_card_token(token)
        {
            return Err(ValidationError::new("card_token", CARD_TOKEN_RULE));
        }
        Ok(NewOrder {
            id,
            user_id: req.user_id,
            money,
            card_token: req.card_token.clone(),
        })
    }

    /// The order's content in one canonical string, to recognise the same request sent again
    /// under an `Idempotency-Key` (`42.5` and `42.50` are the same request).
    pub(crate) fn fingerprint(&self) -> String {
        format!(
            "user_id={};amount_minor={};currency={};card_token={}",
            self.user_id,
            self.money.minor,
            self.money.currency,
            self.card_token.as_deref().unwrap_or("")
        )
    }
}

fn too_large(currency: Currency) -> ValidationError {
    ValidationError::new(
        "amount",
        format!("must be at most {MAX_ORDER_MAJOR_UNITS} {currency}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> CreateOrderRequest {
        serde_json::from_str(json).expect("a well-formed request")
    }

    #[test]
    fn a_valid_request_becomes_an_order_in_minor_units() {
        let order = NewOrder::parse(
            OrderId::generate(),
            &request(r#"{"user_id":1,"amount":42.50,"currency":"USD"}"#),
        )
        .unwrap();
        assert_eq!(order.money.minor, 4250);
        assert_eq!(order.money.currency.code(), "USD");
        assert_eq!(order.money.to_decimal().as_str(), "42.50");
    }

    #[test]
    fn the_currency_defaults_to_usd() {
        let order =
            NewOrder::parse(OrderId::generate(), &request(r#"{"user_id":1,"amount":1}"#)).unwrap();
        assert_eq!(order.money.currency, Currency::USD);
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "a table of cases, one row per bad value"
    )]
    fn each_kind_of_bad_value_is_rejected_with_the_field_named() {
        let cases = [
            (
                r#"{"user_id":0,"amount":1}"#,
                "user_id",
                "must be a positive integer",
            ),
            (
                r#"{"user_id":-3,"amount":1}"#,
                "user_id",
                "must be a positive integer",
            ),
            (
                r#"{"user_id":1,"amount":0}"#,
                "amount",
                "must be greater than zero",
            ),
            (
                r#"{"user_id":1,"amount":-42.5}"#,
                "amount",
                "must be greater than zero",
            ),
            (
                r#"{"user_id":1,"amount":0.001}"#,
                "amount",
                "USD allows at most 2 decimal places",
            ),
            (
                r#"{"user_id":1,"amount":10.5,"currency":"JPY"}"#,
                "amount",
                "JPY allows at most 0 decimal places",
            ),
            (
                r#"{"user_id":1,"amount":1000000.01}"#,
                "amount",
                "must be at most 1000000 USD",
            ),
            (
                r#"{"user_id":1,"amount":1e300}"#,
                "amount",
                "must be at most 1000000 USD",
            ),
            (
                r#"{"user_id":1,"amount":1,"currency":"XYZ"}"#,
                "currency",
                "\"XYZ\" is not a supported ISO 4217 code",
            ),
            (
                r#"{"user_id":1,"amount":1,"currency":"usd"}"#,
                "currency",
                "\"usd\" is not a supported",
            ),
            (
                r#"{"user_id":1,"amount":1,"card_token":"'; DROP TABLE orders; --"}"#,
                "card_token",
                "must be 1 to 64",
            ),
        ];
        for (json, field, message) in cases {
            let err = NewOrder::parse(OrderId::generate(), &request(json)).unwrap_err();
            assert_eq!(err.field, field, "{json}");
            assert!(err.message.starts_with(message), "{json}: {}", err.message);
        }
    }

    #[test]
    fn three_decimal_currencies_keep_three_decimals() {
        let order = NewOrder::parse(
            OrderId::generate(),
            &request(r#"{"user_id":1,"amount":1.234,"currency":"KWD"}"#),
        )
        .unwrap();
        assert_eq!(order.money.minor, 1234);
    }

    #[test]
    fn the_same_order_spelled_differently_has_the_same_fingerprint() {
        let a = NewOrder::parse(
            OrderId::generate(),
            &request(r#"{"user_id":1,"amount":42.5}"#),
        )
        .unwrap();
        let b = NewOrder::parse(
            OrderId::generate(),
            &request(r#"{"user_id":1,"amount":42.50,"currency":"USD"}"#),
        )
        .unwrap();
        let c = NewOrder::parse(
            OrderId::generate(),
            &request(r#"{"user_id":1,"amount":42.51}"#),
        )
        .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
