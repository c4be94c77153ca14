"""The order service of the Python contrast: `POST /orders` saves the order, has the
payment service charge it, and records the answer.

The tutorial's service B, with the Rust order service's spans (`save_order`,
`validate_order`, `save_to_db`) and its statements, sent to the same schema: the order is
inserted `pending`, the charge is a `requests.post` made for this one call, and the order's
status records the payment service's answer. Idempotency keys are not offered (the benchmark
sends none), so the insert's `ON CONFLICT` clause never fires; it is kept so the statement
is the Rust one.
"""

import decimal
import json
import os
import re
import uuid

import requests
from flask import Flask, request
from opentelemetry import trace
from opentelemetry.propagate import inject

import common

provider = common.init_telemetry("order-service")
app = Flask(__name__)
common.instrument(app)
tracer = trace.get_tracer(__name__)
PAYMENT_SERVICE_URL = os.environ["PAYMENT_SERVICE_URL"]
db = common.ConnectionPool(os.environ["DATABASE_URL"])

INSERT_ORDER = (
    "INSERT INTO orders (id, user_id, amount_minor, currency, status, idempotency_key, "
    "request_fingerprint, trace_id) VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s) "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)
UPDATE_STATUS = "UPDATE orders SET status = %s, updated_at = now() WHERE id = %s"


class Invalid(Exception):
    """A request the service refuses, with the field and what is wrong with it."""


def validate(body):
    """The order's values, or `Invalid`. The amount is parsed as a decimal (the body is read
    with `parse_float=Decimal`), so cents are exact; USD-like currencies with two decimals
    only, which is what the benchmark sends."""
    if not isinstance(body, dict):
        raise Invalid("body", "must be a JSON object")
    user_id = body.get("user_id")
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
        raise Invalid("user_id", "must be a positive integer")
    amount = body.get("amount")
    if not isinstance(amount, (int, decimal.Decimal)) or isinstance(amount, bool):
        raise Invalid("amount", "must be a number")
    cents = decimal.Decimal(amount) * 100
    if cents <= 0 or cents != cents.to_integral_value():
        raise Invalid("amount", "must be positive, with at most two decimals")
    currency = body.get("currency") or "USD"
    if not isinstance(currency, str) or not re.fullmatch("[A-Z]{3}", currency):
        raise Invalid("currency", "must be an ISO 4217 code")
    return {
        "user_id": user_id,
        "amount_minor": int(cents),
        "currency": currency,
        "card_token": body.get("card_token"),
    }


def error(status, code, message, order_id=None):
    body = {"error": {"code": code, "message": message, "trace_id": common.trace_id()}}
    if order_id is not None:
        body["error"]["order_id"] = order_id
    return body, status


@app.route("/orders", methods=["POST"])
def save_order():
    with tracer.start_as_current_span("save_order") as span:
        with tracer.start_as_current_span("validate_order"):
            try:
                order = validate(json.loads(request.get_data(), parse_float=decimal.Decimal))
            except ValueError:
                return error(400, "malformed_json", "the body is not JSON")
            except Invalid as e:
                field, message = e.args
                return error(422, "validation_failed", f"{field} {message}")
        order_id = str(uuid.uuid4())
        span.set_attribute("order_id", order_id)
        with tracer.start_as_current_span("save_to_db"):
            db.execute(
                INSERT_ORDER,
                (
                    order_id,
                    order["user_id"],
                    order["amount_minor"],
                    order["currency"],
                    None,
                    None,
                    common.trace_id(),
                ),
            )

        charge = {"order_id": order_id, **{k: v for k, v in order.items() if v is not None}}
        headers = {}
        inject(headers)
        try:
            payment = requests.post(
                f"{PAYMENT_SERVICE_URL}/charge", json=charge, headers=headers, timeout=10
            )
            status = {200: "confirmed", 402: "payment_declined"}.get(
                payment.status_code, "payment_failed"
            )
        except requests.Timeout:
            payment, status = None, "payment_unknown"
        except requests.RequestException:
            payment, status = None, "payment_failed"
        span.set_attribute("payment_status", payment.status_code if payment else 0)
        db.execute(UPDATE_STATUS, (status, order_id))
        span.set_attribute("order.status", status)

        if status == "confirmed":
            body = {"order_id": order_id, "status": status, "trace_id": common.trace_id()}
            return body, 201, {"Location": f"/orders/{order_id}"}
        if status == "payment_declined":
            return error(402, "payment_declined", "the payment was declined", order_id)
        return error(502, status, "the payment service did not charge the order", order_id)


@app.route("/healthz")
def healthz():
    return {"status": "ok"}


if __name__ == "__main__":
    common.serve(app, provider)
