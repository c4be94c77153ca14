//! End-to-end tests of the traced order flow; see `harness` for what a test starts and
//! `otlp` for the receiver that stands in for Jaeger. `fake`, `response` and `telemetry` also
//! serve the services' handler tests.

pub mod fake;
pub mod harness;
pub mod otlp;
pub mod response;
pub mod telemetry;

/// The waterfall of `POST /api/orders`, after the tutorial's: what the receiver gets for one
/// confirmed order, as [`otlp::render_shape`] draws it.
pub const ORDER_TRACE: &str = "\
POST /api/orders [gateway, SERVER]
  create_order [gateway, INTERNAL]
    POST /orders [gateway, CLIENT]
      POST /orders [order-service, SERVER]
        save_order [order-service, INTERNAL]
          validate_order [order-service, INTERNAL]
          save_to_db [order-service, INTERNAL]
            INSERT orders [order-service, CLIENT]
          POST /charge [order-service, CLIENT]
            POST /charge [payment-service, SERVER]
              charge_card [payment-service, INTERNAL]
                lookup_user [payment-service, INTERNAL]
                  SELECT users [payment-service, CLIENT]
                INSERT payments [payment-service, CLIENT]
                call_stripe_api [payment-service, INTERNAL]
                UPDATE payments [payment-service, CLIENT]
          UPDATE orders [order-service, CLIENT]
";

/// How many spans [`ORDER_TRACE`] has.
pub const ORDER_TRACE_SPANS: usize = line_count(ORDER_TRACE);

const fn line_count(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut i, mut lines) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            lines += 1;
        }
        i += 1;
    }
    lines
}
