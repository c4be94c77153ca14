"""The payment service of the Python contrast: `POST /charge` charges an order once.

The tutorial's service C, with the Rust payment service's spans (`charge_card`,
`lookup_user`, `call_stripe_api`) and its three statements: read the user, claim the order's
one payment row (`pending`), settle it. The card processor is simulated and answers at once,
as the Rust one does with `PROCESSOR_LATENCY_MS=0`. The Rust service's signature check of the
order service's charges is not mirrored: it is not one of the tutorial's habits, and without
it every charge is one the Rust service would have accepted.
"""

import os
import uuid

from flask import Flask, request
from opentelemetry import trace

import common

provider = common.init_telemetry("payment-service")
app = Flask(__name__)
common.instrument(app)
tracer = trace.get_tracer(__name__)
db = common.ConnectionPool(os.environ["DATABASE_URL"])

SELECT_USER = "SELECT tier, credit_limit_minor FROM users WHERE id = %s"
# Inserts the order's payment as pending, or returns the one it already has (the no-op
# update makes RETURNING return the existing row).
CLAIM_PAYMENT = (
    "INSERT INTO payments (id, order_id, user_id, amount_minor, currency, status) "
    "VALUES (%s, %s, %s, %s, %s, 'pending') "
    "ON CONFLICT (order_id) DO UPDATE SET updated_at = payments.updated_at "
    "RETURNING id, user_id, amount_minor, currency, status, processor_charge_id, decline_reason"
)
SETTLE_PAYMENT = (
    "UPDATE payments SET status = %s, processor_charge_id = %s, decline_reason = %s, "
    "updated_at = now() WHERE id = %s AND status = 'pending'"
)

# Stripe's test cards, as the Rust processor knows them.
DECLINED_CARDS = {
    "tok_chargeDeclined": "card_declined",
    "tok_chargeDeclinedInsufficientFunds": "insufficient_funds",
}


def call_stripe_api(payment_id, amount_minor, card_token):
    """The simulated processor: (charge id, None) or (None, decline reason)."""
    with tracer.start_as_current_span("call_stripe_api") as span:
        span.set_attribute("processor.idempotency_key", payment_id)
        reason = DECLINED_CARDS.get(card_token)
        if reason is not None:
            span.set_attribute("payment.decline_reason", reason)
            return None, reason
        charge_id = f"ch_{uuid.UUID(payment_id).hex}_{amount_minor}"
        span.set_attribute("processor.charge_id", charge_id)
        return charge_id, None


def error(status, code, message, **extra):
    return {
        "error": {"code": code, "message": message, "trace_id": common.trace_id(), **extra}
    }, status


@app.route("/charge", methods=["POST"])
def charge():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not {"order_id", "user_id", "amount_minor"} <= body.keys():
        return error(422, "validation_failed", "order_id, user_id and amount_minor are required")
    order_id, user_id, amount_minor = body["order_id"], body["user_id"], body["amount_minor"]
    currency = body.get("currency") or "USD"
    with tracer.start_as_current_span("charge_card") as span:
        span.set_attribute("order_id", order_id)
        span.set_attribute("user.id", user_id)
        span.set_attribute("amount_minor", amount_minor)
        with tracer.start_as_current_span("lookup_user") as lookup:
            user = db.execute(SELECT_USER, (user_id,))
            lookup.set_attribute("user.found", user is not None)
        payment_id, _, _, _, status, charge_id, reason = db.execute(
            CLAIM_PAYMENT, (str(uuid.uuid4()), order_id, user_id, amount_minor, currency)
        )
        payment_id = str(payment_id)
        span.set_attribute("payment.id", payment_id)
        if status == "pending":
            if user is None:
                reason = "unknown_user"
            elif amount_minor > user[1]:  # (tier, credit_limit_minor)
                reason = "credit_limit_exceeded"
            else:
                card_token = body.get("card_token")
                charge_id, reason = call_stripe_api(payment_id, amount_minor, card_token)
            status = "succeeded" if charge_id else "declined"
            db.execute(SETTLE_PAYMENT, (status, charge_id, reason, payment_id))
        span.set_attribute("payment.status", status)
        if status == "succeeded":
            return {"payment_id": payment_id, "status": status, "charge_id": charge_id}
        return error(
            402, "payment_declined", f"the payment was declined: {reason}", payment_id=payment_id
        )


@app.route("/healthz")
def healthz():
    return {"status": "ok"}


if __name__ == "__main__":
    common.serve(app, provider)
