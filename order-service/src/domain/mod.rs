//! The order service's domain: what an order is and how it moves, with no HTTP or SQL in it.
//!
//! - [`new_order`]: a request parsed into a [`NewOrder`], the only shape that is stored or
//!   charged, and its fingerprint for recognising a retry.
//! - [`order`]: an [`Order`] as stored, and its state machine: the status a payment answer
//!   gives it ([`PaymentAnswer`]) and what a retried request does with it ([`Retry`]).
//!
//! The words both services speak (`OrderId`, `UserId`, `Money`, `OrderStatus`,
//! `ValidationError`) are `common::api`'s; the rules about them are here.

mod new_order;
mod order;

pub(crate) use new_order::NewOrder;
pub(crate) use order::{Order, PaymentAnswer, Retry};
