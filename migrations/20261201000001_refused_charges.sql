-- Charges the payment service refused because the order service had not signed them (see
-- `common::signing`): no signature, a malformed one, or one made for other values (a random
-- order id, a changed amount). A record for the operator, with the trace that carried it.
--
-- A table of its own, not a status of `payments`: a refused request must never claim an
-- order's one payment row, or anyone able to reach the payment service could block a real
-- order's charge by sending a forged one first. Append-only: the service only ever inserts,
-- and every attempt is kept (so `order_id` is not unique).
CREATE TABLE refused_charges (
    id           UUID        PRIMARY KEY,
    order_id     UUID        NOT NULL,
    user_id      BIGINT      NOT NULL,
    amount_minor BIGINT      NOT NULL,
    currency     TEXT        NOT NULL,
    reason       TEXT        NOT NULL CHECK (reason IN
                     ('signature_missing', 'signature_malformed', 'signature_mismatch')),
    trace_id     TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX refused_charges_by_order ON refused_charges (order_id);
