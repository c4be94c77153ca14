//! Wire types: the JSON bodies that cross a service boundary, and the vocabulary they share.
//!
//! The gateway and the order service both speak `CreateOrderRequest`; the order service and
//! the payment service both speak `ChargeRequest`. Keeping these types in one module means the
//! services never depend on each other, and a field renamed on one side is renamed on both.
//!
//! The ids that cross the wire ([`OrderId`], [`UserId`]) are newtypes here, serialised as the
//! bare value they wrap (so the JSON is a plain UUID or number) and stored as that value
//! (`#[sqlx(transparent)]`). [`Money`] is an integer count of minor units of a [`Currency`];
//! on the wire it is a JSON number in major units (`42.50`), read exactly as written by
//! [`DecimalAmount`], never through `f64`. A request field that is refused is a
//! [`ValidationError`], whichever service refuses it.
//!
//! What is allowed (how large an order may be, who may be charged how much) is each service's
//! domain, not this module's: here are only the shapes, and the rules both sides must agree on
//! to read one another (a card token's form, a currency's decimal places).

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};
use serde_json::value::RawValue;
use uuid::Uuid;

/// An order id: a `UUIDv7`, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct OrderId(pub Uuid);

impl OrderId {
    pub fn generate() -> Self {
        OrderId(Uuid::now_v7())
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A user id, as the gateway is told it, the services store it and spans show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An ISO 4217 currency the services know, with its number of decimal places: what both
/// sides need to agree on to read an amount the same way. Only the constants below exist, so
/// a `Currency` is always one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Currency {
    code: &'static str,
    exponent: u32,
}

impl Currency {
    /// The currency of an order that names none.
    pub const USD: Currency = Currency::new("USD", 2);

    /// Every currency the services know, by code.
    pub const ALL: [Currency; 14] = [
        Currency::new("AUD", 2),
        Currency::new("BHD", 3),
        Currency::new("CAD", 2),
        Currency::new("CHF", 2),
        Currency::new("DKK", 2),
        Currency::new("EUR", 2),
        Currency::new("GBP", 2),
        Currency::new("JPY", 0),
        Currency::new("KRW", 0),
        Currency::new("KWD", 3),
        Currency::new("NOK", 2),
        Currency::new("PLN", 2),
        Currency::new("SEK", 2),
        Currency::USD,
    ];

    const fn new(code: &'static str, exponent: u32) -> Self {
        Currency { code, exponent }
    }

    pub fn from_code(code: &str) -> Option<Currency> {
        Currency::ALL.into_iter().find(|c| c.code == code)
    }

    /// The ISO 4217 code, `USD`.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// How many decimal places the currency has: 2 for USD, 0 for JPY.
    pub fn exponent(self) -> u32 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// An amount of money: an integer count of minor units (cents) of a currency, never a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    /// `amount` (major units, as the client wrote it) in `currency`; fails rather than round.
    pub fn from_decimal(amount: &DecimalAmount, currency: Currency) -> Result<Self, AmountError> {
        Ok(Money {
            minor: amount.to_minor_units(currency.exponent)?,
            currency,
        })
    }

    /// The amount in major units, as the wire writes it: 4250 cents is `42.50`.
    pub fn to_decimal(self) -> DecimalAmount {
        DecimalAmount::from_minor_units(self.minor, self.currency.exponent)
    }
}

/// A request field that failed validation, and why: the reason of a 422 `validation_failed`,
/// in either service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        ValidationError {
            field,
            message: message.into(),
        }
    }
}

/// A name outside a closed set: a status, tier or reason read back from the database that no
/// variant has. Stored values are only ever written from the enums, so this is corrupt data,
/// and it is an error rather than a guess.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a known {kind}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
}

impl UnknownName {
    pub fn new(kind: &'static str, value: &str) -> Self {
        UnknownName {
            kind,
            value: value.to_owned(),
        }
    }
}

/// `POST /api/orders` on the gateway and `POST /orders` on the order service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateOrderRequest {
    pub user_id: UserId,
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
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub trace_id: String,
}

/// `GET /api/orders/{id}` and `GET /orders/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub amount: DecimalAmount,
    pub currency: String,
    pub status: OrderStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The trace that created the order.
    pub trace_id: String,
}

/// Where an order is, on the wire and in the `orders.status` column (whose `CHECK` lists the
/// same names). Which status follows which is the order service's domain.
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
    const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::PaymentDeclined,
        OrderStatus::PaymentFailed,
        OrderStatus::PaymentUnknown,
    ];

    /// The name, as the JSON and the database write it.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::PaymentDeclined => "payment_declined",
            OrderStatus::PaymentFailed => "payment_failed",
            OrderStatus::PaymentUnknown => "payment_unknown",
        }
    }
}

impl FromStr for OrderStatus {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownName::new("order status", s))
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A customer's tier: in the order request, in the baggage, and in the `users.tier` column
/// (whose `CHECK` lists the same names).
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
    const ALL: [CustomerTier; 4] = [
        CustomerTier::Standard,
        CustomerTier::Silver,
        CustomerTier::Gold,
        CustomerTier::Platinum,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CustomerTier::Standard => "standard",
            CustomerTier::Silver => "silver",
            CustomerTier::Gold => "gold",
            CustomerTier::Platinum => "platinum",
        }
    }
}

impl FromStr for CustomerTier {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CustomerTier::ALL
            .into_iter()
            .find(|tier| tier.as_str() == s)
            .ok_or_else(|| UnknownName::new("customer tier", s))
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
///
/// The amount and currency stay the bare values the JSON has: which currencies and amounts a
/// charge may have is for the payment service to decide, with a `validation_failed` that
/// names the field, not for the JSON parser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    /// One order is charged at most once: the payment service treats this as the
    /// idempotency key of the charge.
    pub order_id: OrderId,
    pub user_id: UserId,
    pub amount_minor: i64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeResponse {
    /// The payment service's own id for the payment (its `PaymentId`).
    pub payment_id: Uuid,
    pub status: PaymentStatus,
    /// The processor's charge id; absent for a declined payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_id: Option<String>,
}

/// How a charge ended, as the answer to `POST /charge` says it. (A payment's life in the
/// payment service's database, `pending` included, is that service's domain.)
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

/// The exponent of a JSON number, the text after its `e`: an optional sign and digits. More
/// than three significant digits is out of range for any amount.
fn parse_exponent(exp_text: &str) -> Result<i32, AmountError> {
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
    let exponent = exp_digits
        .parse::<i32>()
        .map_err(|_| AmountError::NotANumber)?;
    Ok(if exp_text.starts_with('-') {
        -exponent
    } else {
        exponent
    })
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
            exponent = parse_exponent(&literal[i + 1..])?;
            i = literal.len();
        }
        if i != literal.len() {
            return Err(AmountError::NotANumber);
        }
        let all_digits = format!("{int_part}{frac_part}");
        let digits = all_digits.trim_start_matches('0');
        // Trailing zeros carry no value; dropping them makes 42.50 and 42.5 compare equal.
        let trimmed = digits.trim_end_matches('0');
        // A literal longer than i32::MAX digits cannot arrive (bodies are bounded far below),
        // but the conversion says so rather than wrap.
        let length = |s: &str| i32::try_from(s.len()).map_err(|_| AmountError::TooLarge);
        let dropped = length(digits)? - length(trimmed)?;
        let scale = if trimmed.is_empty() {
            0
        } else {
            length(frac_part)? - exponent - dropped
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
        let too_precise = AmountError::TooPrecise {
            max_decimals: exponent,
        };
        let shift = i32::try_from(exponent)
            .ok()
            .and_then(|e| e.checked_sub(self.scale))
            .and_then(|shift| u32::try_from(shift).ok())
            .ok_or(too_precise)?;
        // More digits than an i128 holds is too large for any currency.
        let mantissa: i128 = self.digits.parse().map_err(|_| AmountError::TooLarge)?;
        let value = 10_i128
            .checked_pow(shift)
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
    fn order_statuses_round_trip_through_the_names_the_json_and_the_database_use() {
        for status in OrderStatus::ALL {
            let name = status.as_str();
            assert_eq!(name.parse::<OrderStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{name}\""),
                "the JSON name is the database name"
            );
        }
        for tier in CustomerTier::ALL {
            assert_eq!(tier.as_str().parse::<CustomerTier>(), Ok(tier));
            assert_eq!(serde_json::to_string(&tier).unwrap(), format!("\"{tier}\""));
        }
    }

    #[test]
    fn an_unknown_status_or_tier_is_an_error_not_a_default() {
        for unknown in ["shipped", "", "Pending", "PENDING", " pending"] {
            assert_eq!(
                unknown.parse::<OrderStatus>(),
                Err(UnknownName::new("order status", unknown)),
                "{unknown:?}"
            );
        }
        assert!("diamond".parse::<CustomerTier>().is_err());
    }

    #[test]
    fn ids_are_written_as_the_bare_values_they_wrap() {
        let id = OrderId(Uuid::parse_str("01936b2e-7c3a-7def-8123-456789abcdef").unwrap());
        let created = OrderCreated {
            order_id: id,
            status: OrderStatus::Confirmed,
            trace_id: "t".into(),
        };
        assert_eq!(
            serde_json::to_string(&created).unwrap(),
            r#"{"order_id":"01936b2e-7c3a-7def-8123-456789abcdef","status":"confirmed","trace_id":"t"}"#
        );
        assert_eq!(id.to_string(), "01936b2e-7c3a-7def-8123-456789abcdef");
        let body: CreateOrderRequest =
            serde_json::from_str(r#"{"user_id":42,"amount":1}"#).unwrap();
        assert_eq!(body.user_id, UserId(42));
        assert_eq!(body.user_id.to_string(), "42");
    }

    #[test]
    fn money_reads_and_writes_major_units_with_the_currency_decimals() {
        let jpy = Currency::from_code("JPY").unwrap();
        let amount = DecimalAmount::parse("1.234").unwrap();
        let kwd = Currency::from_code("KWD").unwrap();
        assert_eq!(Money::from_decimal(&amount, kwd).unwrap().minor, 1234);
        assert_eq!(
            Money::from_decimal(&amount, jpy),
            Err(AmountError::TooPrecise { max_decimals: 0 })
        );
        let money = Money {
            minor: 4250,
            currency: Currency::USD,
        };
        assert_eq!(money.to_decimal().as_str(), "42.50");
        assert_eq!(Currency::from_code("usd"), None);
        assert_eq!(Currency::from_code("XXX"), None);
    }
}
