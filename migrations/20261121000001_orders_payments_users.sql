-- The demo's schema. One database serves both services for simplicity; each service owns
-- its tables (the order service `orders`, the payment service `users` and `payments`) and
-- never writes the other's, which is why there are no foreign keys across the two.

CREATE TABLE users (
    id                 BIGINT PRIMARY KEY,
    name               TEXT   NOT NULL,
    tier               TEXT   NOT NULL CHECK (tier IN ('standard', 'silver', 'gold', 'platinum')),
    -- The most one order may be charged, in minor units of the user's currency.
    credit_limit_minor BIGINT NOT NULL CHECK (credit_limit_minor >= 0)
);

CREATE TABLE orders (
    id               UUID        PRIMARY KEY,
    user_id          BIGINT      NOT NULL CHECK (user_id > 0),
    amount_minor     BIGINT      NOT NULL CHECK (amount_minor > 0),
    currency         TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status           TEXT        NOT NULL CHECK (status IN
                         ('pending', 'confirmed', 'payment_declined', 'payment_failed', 'payment_unknown')),
    -- The client's Idempotency-Key, and a fingerprint of the request it came with: the same
    -- key with another request is refused. The fingerprint is the parsed request in canonical
    -- form, so `42.5` and `42.50` are the same request.
    idempotency_key  TEXT        UNIQUE,
    request_fingerprint TEXT,
    -- The trace that created the order, so an order found in the database leads to its trace.
    trace_id         TEXT        NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((idempotency_key IS NULL) = (request_fingerprint IS NULL))
);

CREATE TABLE payments (
    id                  UUID        PRIMARY KEY,
    -- At most one payment per order, whatever is retried.
    order_id            UUID        NOT NULL UNIQUE,
    user_id             BIGINT      NOT NULL,
    amount_minor        BIGINT      NOT NULL CHECK (amount_minor > 0),
    currency            TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status              TEXT        NOT NULL CHECK (status IN ('pending', 'succeeded', 'declined')),
    processor_charge_id TEXT,
    decline_reason      TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((status = 'succeeded') = (processor_charge_id IS NOT NULL)),
    CHECK ((status = 'declined') = (decline_reason IS NOT NULL))
);

-- Demo users, so the README's curl works on a fresh database. Limits are in cents.
INSERT INTO users (id, name, tier, credit_limit_minor) VALUES
    (1, 'Ada Lovelace',     'gold',      500000),
    (2, 'Grace Hopper',     'platinum', 2000000),
    (3, 'Alan Turing',      'standard',   10000),
    (4, 'Edsger Dijkstra',  'silver',     50000),
    (5, 'Trom Chocolatier', 'standard',    2500);
