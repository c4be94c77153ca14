//! Wire types: the JSON bodies that cross a service boundary.
//!
//! The gateway and the order service both speak `CreateOrderRequest`; the order service and
//! the payment service both speak `ChargeRequest`. Keeping these types in one module means the
//! services never depend on each other, and a field renamed on one side is renamed on both.
//!
//! Money on the wire is a JSON number in major units (`42.50`), read exactly as written by
//! [`DecimalAmount`], never through `f64`. Inside the services it is an integer count of
//! minor units (cents).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};
use serde_json::value::RawValue;
use uuid::Uuid;

/// `POST /api/orders` on the gateway and `POST /orders` on the order service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateOrderRequest {
    pub user_id: i64,
    pub amount: DecimalAmount,
    /// ISO 4217 code; `USD` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The customer's tier, carried as baggage; `standard` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<CustomerTier>,
    /// A test card token for demos, after Stripe's: `tok_chargeDeclined` is always declined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_token: Option<String>,
}

/// What a `card_token` may be, as the error message says it.
pub const CARD_TOKEN_RULE: &str = "must be 1 to 64 letters, digits or underscores";

/// Whether `token` is a well-formed card token (`tok_visa`): the rule both the order service
/// and the payment service enforce on the field.
pub fn is_valid_card_token(token: &str) -> bool {
    (1..=64).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The answer to a created (or replayed) order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: Uuid,
    pub status: OrderStatus,
    pub trace_id: String,
}

/// `GET /api/orders/{id}` and `GET /orders/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub order_id: Uuid,
    pub user_id: i64,
    pub amount: DecimalAmount,
    pub currency: String,
    pub status: OrderStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The trace that created the order.
    pub trace_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Saved, payment not yet answered.
    Pending,
    Confirmed,
    PaymentDeclined,
    /// The payment service could not be reached or failed; nothing was charged.
    PaymentFailed,
    /// The payment call timed out: the charge may or may not have happened. Retrying with
    /// the same `Idempotency-Key` settles it without charging twice.
    PaymentUnknown,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::PaymentDeclined => "payment_declined",
            OrderStatus::PaymentFailed => "payment_failed",
            OrderStatus::PaymentUnknown => "payment_unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            OrderStatus::Pending,
            OrderStatus::Confirmed,
            OrderStatus::PaymentDeclined,
            OrderStatus::PaymentFailed,
            OrderStatus::PaymentUnknown,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerTier {
    #[default]
    Standard,
    Silver,
    Gold,
    Platinum,
}

impl CustomerTier {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerTier::Standard => "standard",
            CustomerTier::Silver => "silver",
            CustomerTier::Gold => "gold",
            CustomerTier::Platinum => "platinum",
        }
    }
}

impl fmt::Display for CustomerTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /charge` on the payment service, sent with the order service's signature of it in
/// the `charge-signature` header ([`crate::signing`]): every field is signed, so none can be
/// changed on the way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    /// One order is charged at most once: the payment service treats this as the
    /// idempotency key of the charge.
    pub order_id: Uuid,
    pub user_id: i64,
    pub amount_minor: i64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeResponse {
    pub payment_id: Uuid,
    pub status: PaymentStatus,
    /// The processor's charge id; absent for a declined payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Succeeded,
    Declined,
}

/// A decimal number exactly as the client wrote it in JSON.
///
/// `42.50` stays forty-two and a half; there is no `f64` in between to turn `0.29` into
/// `0.28999…`. It serialises back to the same literal, so a service that forwards a request
/// forwards the client's number unchanged.
#[derive(Clone, Debug)]
pub struct DecimalAmount {
    literal: String,
    negative: bool,
    /// The significant digits, without leading zeros ("" for zero).
    digits: String,
    /// The value is `digits × 10^-scale`; negative after a large exponent (`1e3`).
    scale: i32,
}

/// Why an amount could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("must be a JSON number, like 42.50")]
    NotANumber,
    #[error("is too large")]
    TooLarge,
    #[error("has more than {max_decimals} decimal places")]
    TooPrecise { max_decimals: u32 },
    /// An exponent of more than three digits: no amount of money is written like that, and
    /// refusing it keeps the arithmetic below from overflowing.
    #[error("has an exponent out of range")]
    ExponentOutOfRange,
}

impl DecimalAmount {
    /// Parses the text of a JSON number.
    pub fn parse(literal: &str) -> Result<Self, AmountError> {
        let bytes = literal.as_bytes();
        let mut i = 0;
        let negative = bytes.first() == Some(&b'-');
        if negative {
            i += 1;
        }
        let int_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let int_part = &literal[int_start..i];
        // JSON: at least one integer digit, and no leading zero before other digits.
        if int_part.is_empty() || (int_part.len() > 1 && int_part.starts_with('0')) {
            return Err(AmountError::NotANumber);
        }
        let mut frac_part = "";
        if bytes.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            frac_part = &literal[start..i];
            if frac_part.is_empty() {
                return Err(AmountError::NotANumber);
            }
        }
        let mut exponent: i32 = 0;
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            let exp_text = &literal[i + 1..];
            let exp_digits = exp_text.trim_start_matches(['+', '-']);
            if exp_digits.is_empty()
                || exp_text.len() - exp_digits.len() > 1
                || !exp_digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(AmountError::NotANumber);
            }
            if exp_digits.trim_start_matches('0').len() > 3 {
                return Err(AmountError::ExponentOutOfRange);
            }
            exponent = exp_digits
                .parse::<i32>()
                .map_err(|_| AmountError::NotANumber)?;
            if exp_text.starts_with('-') {
                exponent = -exponent;
            }
            i = literal.len();
        }
        if i != literal.len() {
            return Err(AmountError::NotANumber);
        }
        let all_digits = format!("{int_part}{frac_part}");
        let digits = all_digits.trim_start_matches('0');
        // Trailing zeros carry no value; dropping them makes 42.50 and 42.5 compare equal.
        let trimmed = digits.trim_end_matches('0');
        let dropped = (digits.len() - trimmed.len()) as i32;
        let scale = if trimmed.is_empty() {
            0
        } else {
            frac_part.len() as i32 - exponent - dropped
        };
        Ok(DecimalAmount {
            literal: literal.to_owned(),
            negative: negative && !trimmed.is_empty(),
            digits: trimmed.to_owned(),
            scale,
        })
    }

    /// The amount as an integer count of minor units, for a currency with `exponent` decimal
    /// places (2 for USD, 0 for JPY). Fails rather than round.
    pub fn to_minor_units(&self, exponent: u32) -> Result<i64, AmountError> {
        if self.digits.is_empty() {
            return Ok(0);
        }
        let shift = exponent as i32 - self.scale;
        if shift < 0 {
            return Err(AmountError::TooPrecise {
                max_decimals: exponent,
            });
        }
        // More digits than an i128 holds is too large for any currency.
        let mantissa: i128 = self.digits.parse().map_err(|_| AmountError::TooLarge)?;
        let value = 10_i128
            .checked_pow(shift as u32)
            .and_then(|p| mantissa.checked_mul(p))
            .ok_or(AmountError::TooLarge)?;
        let value = if self.negative { -value } else { value };
        i64::try_from(value).map_err(|_| AmountError::TooLarge)
    }

    /// The literal for `minor` minor units of a currency with `exponent` decimal places:
    /// `from_minor_units(4250, 2)` is `42.50`.
    pub fn from_minor_units(minor: i64, exponent: u32) -> Self {
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs().to_string();
        let literal = if exponent == 0 {
            format!("{sign}{abs}")
        } else {
            let width = exponent as usize + 1;
            let padded = format!("{abs:0>width$}");
            let (int, frac) = padded.split_at(padded.len() - exponent as usize);
            format!("{sign}{int}.{frac}")
        };
        Self::parse(&literal).expect("a formatted integer is a valid literal")
    }

    pub fn as_str(&self) -> &str {
        &self.literal
    }
}

impl PartialEq for DecimalAmount {
    fn eq(&self, other: &Self) -> bool {
        (self.negative, &self.digits, self.scale) == (other.negative, &other.digits, other.scale)
    }
}

impl fmt::Display for DecimalAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.literal)
    }
}

impl Serialize for DecimalAmount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A RawValue is written verbatim: the number goes out exactly as it came in.
        let raw = RawValue::from_string(self.literal.clone()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DecimalAmount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only serde_json can hand out the raw text of a number; this type is for JSON bodies.
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        DecimalAmount::parse(raw.get().trim()).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_convert_to_minor_units_exactly() {
        let cases: &[(&str, u32, Result<i64, AmountError>)] = &[
            ("42.50", 2, Ok(4250)),
            ("42.5", 2, Ok(4250)),
            ("0.29", 2, Ok(29)),
            ("0.1", 2, Ok(10)),
            ("42", 2, Ok(4200)),
            ("42", 0, Ok(42)),
            ("4.25e1", 2, Ok(4250)),
            ("1E2", 2, Ok(10000)),
            ("4250e-2", 2, Ok(4250)),
            ("0", 2, Ok(0)),
            ("0.000", 2, Ok(0)),
            ("-1.5", 2, Ok(-150)),
            (
                "42.505",
                2,
                Err(AmountError::TooPrecise { max_decimals: 2 }),
            ),
            ("0.5", 0, Err(AmountError::TooPrecise { max_decimals: 0 })),
            ("1e-7", 2, Err(AmountError::TooPrecise { max_decimals: 2 })),
            ("92233720368547758.08", 2, Err(AmountError::TooLarge)),
            ("1e25", 2, Err(AmountError::TooLarge)),
            ("1e300", 2, Err(AmountError::TooLarge)),
            (
                "1e-300",
                2,
                Err(AmountError::TooPrecise { max_decimals: 2 }),
            ),
            ("1e99999999999", 2, Err(AmountError::ExponentOutOfRange)),
            (
                "123456789012345678901234567890123",
                2,
                Err(AmountError::TooLarge),
            ),
        ];
        for (literal, exponent, expected) in cases {
            let got = DecimalAmount::parse(literal).and_then(|a| a.to_minor_units(*exponent));
            assert_eq!(&got, expected, "{literal} with {exponent} decimals");
        }
    }

    #[test]
    fn text_that_is_not_a_json_number_is_rejected() {
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "1e+-2", "+1", "1.2.3", "\"42\"", "NaN", "Infinity",
            "0x10", "4 2",
        ] {
            assert_eq!(
                DecimalAmount::parse(bad).unwrap_err(),
                AmountError::NotANumber,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_amount_serialises_to_the_literal_it_was_read_from() {
        let body: CreateOrderRequest =
            serde_json::from_str(r#"{"user_id":1,"amount":42.50,"currency":"USD"}"#).unwrap();
        assert_eq!(body.amount.as_str(), "42.50");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"user_id":1,"amount":42.50,"currency":"USD"}"#
        );
    }

    #[test]
    fn an_amount_written_as_a_string_is_a_type_error() {
        let err = serde_json::from_str::<CreateOrderRequest>(r#"{"user_id":1,"amount":"42.50"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("must be a JSON number"), "{err}");
    }

    #[test]
    fn minor_units_format_with_the_currency_exponent() {
        assert_eq!(DecimalAmount::from_minor_units(4250, 2).as_str(), "42.50");
        assert_eq!(DecimalAmount::from_minor_units(5, 2).as_str(), "0.05");
        assert_eq!(DecimalAmount::from_minor_units(4250, 0).as_str(), "4250");
        assert_eq!(DecimalAmount::from_minor_units(-5, 3).as_str(), "-0.005");
    }

    #[test]
    fn equal_values_compare_equal_whatever_their_spelling() {
        let a = DecimalAmount::parse("42.5").unwrap();
        assert_eq!(a, DecimalAmount::parse("42.50").unwrap());
        assert_eq!(a, DecimalAmount::parse("4.25e1").unwrap());
        assert_ne!(a, DecimalAmount::parse("42.51").unwrap());
    }

    #[test]
    fn order_statuses_round_trip_through_their_names() {
        for s in [
            "pending",
            "confirmed",
            "payment_declined",
            "payment_failed",
            "payment_unknown",
        ] {
            assert_eq!(OrderStatus::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(OrderStatus::parse("shipped"), None);
    }
}
