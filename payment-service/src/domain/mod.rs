//! The payment service's domain: what may be charged, and a payment's life, with no HTTP or
//! SQL in it.
//!
//! - [`charge`]: a request parsed into a [`Charge`], the only shape that is stored or sent to
//!   the processor, and the declines the service makes itself (unknown user, credit limit).
//! - [`payment`]: the order's one [`Payment`] and its state machine: pending until settled
//!   with a [`ChargeOutcome`], and what a charge does with a payment it finds ([`Attempt`]).
//! - [`user`]: what a charge needs to know about a [`User`].
//!
//! The words both services speak (`OrderId`, `UserId`, `Money`, `ValidationError`) are
//! `common::api`'s; [`PaymentId`] is this service's own.

mod charge;
mod payment;
mod user;

pub(crate) use charge::Charge;
pub(crate) use payment::{
    Attempt, ChargeOutcome, DeclineReason, Payment, PaymentId, PaymentState, PaymentStatus,
};
pub(crate) use user::User;
