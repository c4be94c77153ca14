//! End-to-end tests of the traced order flow: `harness` starts the three real binaries on a
//! fresh database, exporting to an in-process OTLP receiver, and this module holds the trace
//! they must produce. What is not about the three binaries (the database, the receiver, the
//! fakes, the response checks) is in `testkit`, which the services' own tests share.

pub mod harness;

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

/// [`ORDER_TRACE`] without the spans `service` recorded: the trace the others still send
/// when `service` starts traces of its own (propagation off there). The spans that called it
/// stay, now without children.
pub fn order_trace_without(service: &str) -> String {
    let tag = format!("[{service}, ");
    ORDER_TRACE
        .lines()
        .filter(|line| !line.contains(&tag))
        .flat_map(|line| [line, "\n"])
        .collect()
}

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
