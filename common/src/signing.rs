//! Signed charges: the order service vouches for every charge it asks the payment service to
//! make, and the payment service moves money only for a charge so vouched for.
//!
//! Without this, anything that can reach `POST /charge` (a compromised neighbour, a port left
//! open, a confused script) could charge any user any amount for an order that does not
//! exist. The order service signs a charge only after it has stored the order, with an
//! HMAC-SHA256 over the charge's canonical encoding and a key the two services share
//! (`CHARGE_SIGNING_KEY`); the signature travels in the `charge-signature` header as
//! `v1=<64 hex digits>`. The payment service recomputes it and compares in constant time
//! ([`hmac::Mac::verify_slice`]): a request with no signature, a malformed one, or one made
//! for other values (another order, user, amount, currency or card token) is refused.
//!
//! The encoding is canonical by construction: a version tag, then every field of
//! [`ChargeRequest`] in a fixed order, each with its length in front, so no two different
//! charges encode to the same bytes (`"US" + "D1"` cannot pass for `"USD" + "1"`). The JSON
//! body is not what is signed: two serialisations of one charge (key order, spacing, `42`
//! and `4.2e1`) are the same charge, and must verify alike.
//!
//! A replayed request is not a threat this has to stop: it carries the same order id, and
//! the payment service charges an order at most once.

use std::str::FromStr;

use hmac::{KeyInit, Mac};

use crate::{api::ChargeRequest, config::Secret};

/// The request header that carries a charge's signature.
pub const SIGNATURE_HEADER: &str = "charge-signature";

/// The fewest bytes a signing key may have: HMAC-SHA256's output size, so the key is not the
/// weakest part.
pub const MIN_KEY_BYTES: usize = 32;

/// Names the encoding and the algorithm. A future scheme gets `v2=`, so both services can be
/// rolled over one at a time.
const VERSION: &str = "v1";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The key the order service signs with and the payment service verifies with, read from
/// `CHARGE_SIGNING_KEY`: any text of at least [`MIN_KEY_BYTES`] bytes (e.g. the output of
/// `openssl rand -hex 32`). It has no `Debug`: it is held in a [`Secret`].
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl FromStr for SigningKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < MIN_KEY_BYTES {
            return Err(format!(
                "must be at least {MIN_KEY_BYTES} bytes (it has {}); e.g. the output of `openssl rand -hex 32`",
                s.len()
            ));
        }
        Ok(SigningKey(s.as_bytes().to_vec()))
    }
}

/// Why a charge's signature was not accepted; each is a refused charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the charge has no {SIGNATURE_HEADER} header")]
    Missing,
    #[error("the {SIGNATURE_HEADER} header is not v1=<64 hex digits>")]
    Malformed,
    #[error("the {SIGNATURE_HEADER} header does not match the charge")]
    Mismatch,
}

impl SignatureError {
    /// A stable name, stored with the refused charge.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::Malformed => "signature_malformed",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

/// Signs and verifies charges with one key. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ChargeSigner {
    key: Secret<SigningKey>,
}

impl ChargeSigner {
    pub fn new(key: Secret<SigningKey>) -> Self {
        ChargeSigner { key }
    }

    /// The value of the [`SIGNATURE_HEADER`] for `charge`: `v1=<64 hex digits>`.
    pub fn sign(&self, charge: &ChargeRequest) -> String {
        let tag = self.mac(charge).finalize().into_bytes();
        format!("{VERSION}={}", hex::encode(tag))
    }

    /// Whether `signature` (the header's value, if any) was made for `charge` with this key.
    /// The comparison takes the same time wherever the first wrong byte is, so a caller
    /// cannot find a valid signature byte by byte.
    pub fn verify(
        &self,
        charge: &ChargeRequest,
        signature: Option<&str>,
    ) -> Result<(), SignatureError> {
        let signature = signature.ok_or(SignatureError::Missing)?;
        let tag = signature
            .strip_prefix(VERSION)
            .and_then(|rest| rest.strip_prefix('='))
            .filter(|hex| hex.len() == 64)
            .and_then(|hex| hex::decode(hex).ok())
            .ok_or(SignatureError::Malformed)?;
        self.mac(charge)
            .verify_slice(&tag)
            .map_err(|_| SignatureError::Mismatch)
    }

    fn mac(&self, charge: &ChargeRequest) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key.expose_secret().0)
            .expect("HMAC takes a key of any length");
        mac.update(&canonical(charge));
        mac
    }
}

/// The bytes that are signed; see the module docs.
fn canonical(charge: &ChargeRequest) -> Vec<u8> {
    // Destructured, not read field by field: a field added to `ChargeRequest` does not compile
    // here until it is signed too (or deliberately left out, with a reason).
    let ChargeRequest {
        order_id,
        user_id,
        amount_minor,
        currency,
        card_token,
    } = charge;
    let mut out = Vec::with_capacity(128);
    let mut field = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    field(b"traced-orders charge v1");
    field(order_id.0.as_bytes());
    field(&user_id.0.to_be_bytes());
    field(&amount_minor.to_be_bytes());
    field(currency.as_bytes());
    match card_token {
        // Absent and present are told apart by a marker, so no token value can pass for none.
        None => field(b"-"),
        Some(token) => {
            field(b"+");
            field(token.as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::api::{OrderId, UserId};

    fn signer(key: &str) -> ChargeSigner {
        ChargeSigner::new(Secret::new(key.parse().expect("a long enough key")))
    }

    fn charge() -> ChargeRequest {
        ChargeRequest {
            order_id: OrderId(Uuid::parse_str("01936b2e-7c3a-7def-8123-456789abcdef").unwrap()),
            user_id: UserId(1),
            amount_minor: 4250,
            currency: "USD".into(),
            card_token: None,
        }
    }

    const KEY: &str = "a test key that is long enough to sign with";

    #[test]
    fn a_signature_verifies_for_the_charge_it_was_made_for() {
        let signer = signer(KEY);
        let signature = signer.sign(&charge());
        assert!(signature.starts_with("v1="), "{signature}");
        assert_eq!(signature.len(), 3 + 64);
        assert_eq!(signer.verify(&charge(), Some(&signature)), Ok(()));
        assert_eq!(
            signature,
            signer.sign(&charge()),
            "signing is deterministic"
        );
    }

    #[test]
    fn a_signature_does_not_verify_for_any_other_charge() {
        /// Changes one thing the charge depends on.
        type Change = fn(&mut ChargeRequest);
        let signer = signer(KEY);
        let signature = signer.sign(&charge());
        let changes: [(&str, Change); 6] = [
            ("another order", |c| c.order_id = OrderId::generate()),
            ("another user", |c| c.user_id = UserId(2)),
            ("another amount", |c| c.amount_minor = 4251),
            ("another currency", |c| c.currency = "EUR".into()),
            ("a card token added", |c| {
                c.card_token = Some("tok_visa".into());
            }),
            ("an empty card token added", |c| {
                c.card_token = Some(String::new());
            }),
        ];
        for (what, change) in changes {
            let mut other = charge();
            change(&mut other);
            assert_eq!(
                signer.verify(&other, Some(&signature)),
                Err(SignatureError::Mismatch),
                "{what}"
            );
        }
    }

    #[test]
    fn another_key_makes_another_signature() {
        let signature = signer(KEY).sign(&charge());
        let other = signer("another key, also long enough to sign with");
        assert_eq!(
            other.verify(&charge(), Some(&signature)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_and_malformed_signatures_are_told_apart() {
        let signer = signer(KEY);
        let good = signer.sign(&charge());
        assert_eq!(signer.verify(&charge(), None), Err(SignatureError::Missing));
        for bad in [
            String::new(),
            "v1=".into(),
            good[3..].to_owned(),
            format!("v2={}", &good[3..]),
            format!("{good}00"),
            good[..good.len() - 1].to_owned(),
            format!("{}g", &good[..good.len() - 1]),
            format!(" {good}"),
        ] {
            assert_eq!(
                signer.verify(&charge(), Some(&bad)),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let a = ChargeRequest {
            currency: "USD".into(),
            card_token: Some("x".into()),
            ..charge()
        };
        let b = ChargeRequest {
            currency: "USDx".into(),
            card_token: None,
            ..charge()
        };
        assert_ne!(canonical(&a), canonical(&b));
    }

    #[test]
    fn a_short_key_is_refused_with_the_rule() {
        let err = "too short".parse::<SigningKey>().err().expect("refused");
        assert!(err.contains("at least 32 bytes"), "{err}");
        assert!(
            "k".repeat(MIN_KEY_BYTES).parse::<SigningKey>().is_ok(),
            "exactly the minimum is enough"
        );
    }
}
