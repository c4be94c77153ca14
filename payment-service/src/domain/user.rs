//! What a charge needs to know about a user: the tier shown on the span, and the credit limit
//! that [`super::Charge::screen`] holds the charge to.

use common::api::CustomerTier;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct User {
    pub tier: CustomerTier,
    /// The most one order may be charged, in minor units.
    pub credit_limit_minor: i64,
}
