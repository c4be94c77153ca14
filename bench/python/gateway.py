"""The gateway of the Python contrast: `POST /api/orders`, forwarded to the order service.

The tutorial's service A: a `create_order` span under Flask's SERVER span, the trace context
injected into the headers of a `requests.post` made for this one call (a new connection
each time, as `requests.post` without a `Session` does). As the Rust gateway does, it puts
`user_id` and `customer_tier` into the baggage, and answers 201 with the order service's
body, the trace id replaced by its own.
"""

import os

import requests
from flask import Flask, request
from opentelemetry import baggage, context, trace
from opentelemetry.propagate import inject

import common

provider = common.init_telemetry("gateway")
app = Flask(__name__)
common.instrument(app)
tracer = trace.get_tracer(__name__)
ORDER_SERVICE_URL = os.environ["ORDER_SERVICE_URL"]


def error(status, code, message):
    return {"error": {"code": code, "message": message, "trace_id": common.trace_id()}}, status


@app.route("/api/orders", methods=["POST"])
def create_order():
    order = request.get_json(silent=True)
    if not isinstance(order, dict) or "user_id" not in order:
        return error(400, "bad_request", "the body must be a JSON object with a user_id")
    user_id = str(order["user_id"])
    tier = str(order.get("tier") or "standard")
    # Baggage travels in the headers `inject` writes, to both services downstream. Attached,
    # not only set: `set_baggage` returns a new context and changes nothing by itself.
    cx = baggage.set_baggage("user_id", user_id)
    cx = baggage.set_baggage("customer_tier", tier, context=cx)
    token = context.attach(cx)
    try:
        with tracer.start_as_current_span("create_order") as span:
            span.set_attribute("user_id", user_id)
            span.set_attribute("customer_tier", tier)
            headers = {}
            inject(headers)
            try:
                response = requests.post(
                    f"{ORDER_SERVICE_URL}/orders", json=order, headers=headers, timeout=10
                )
            except requests.RequestException as e:
                span.record_exception(e)
                span.set_status(trace.Status(trace.StatusCode.ERROR))
                return error(502, "order_service_unreachable", "the order service did not answer")
            span.set_attribute("response_status", response.status_code)
            try:
                body = response.json()
            except ValueError:
                return error(502, "bad_upstream_response", "the order service answered garbage")
            if response.status_code != 201:
                return body, response.status_code
            span.set_attribute("order_id", body["order_id"])
            body["trace_id"] = common.trace_id() or body.get("trace_id", "")
            return body, 201, {"Location": f"/api/orders/{body['order_id']}"}
    finally:
        context.detach(token)


@app.route("/healthz")
def healthz():
    return {"status": "ok"}


if __name__ == "__main__":
    common.serve(app, provider)
