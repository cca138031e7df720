-- The example e-commerce tables TrendStream captures (Debezium or pg-capture), and the
-- publication pg-capture reads. Idempotent: safe to run again.
--
-- REPLICA IDENTITY FULL on orders and inventory: updates and deletes then carry the whole old
-- row, which cdc-processor needs to tell a status change from another update and to turn the
-- delete of an order into a cancellation (user, amount). Timestamps are timestamptz so the
-- change events carry an unambiguous instant (Debezium's ZonedTimestamp).

CREATE TABLE IF NOT EXISTS users (
    id          text        PRIMARY KEY,
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id          text          PRIMARY KEY,
    user_id     text          NOT NULL,
    status      text          NOT NULL DEFAULT 'placed'
                              CHECK (status IN ('placed', 'paid', 'cancelled', 'refunded')),
    amount      numeric(12,2) NOT NULL CHECK (amount >= 0),
    currency    char(3)       NOT NULL DEFAULT 'TRY',
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_user_id ON orders (user_id);
ALTER TABLE orders REPLICA IDENTITY FULL;

CREATE TABLE IF NOT EXISTS order_items (
    order_id    text          NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no     integer       NOT NULL,
    product_id  text          NOT NULL,
    category    text          NOT NULL,
    quantity    integer       NOT NULL CHECK (quantity > 0),
    unit_price  numeric(12,2) NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE IF NOT EXISTS inventory (
    sku         text        PRIMARY KEY,
    quantity    integer     NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE inventory REPLICA IDENTITY FULL;

-- pg-capture's default publication (PG_CAPTURE_PUBLICATION); Debezium can use it too
-- (publication.name, publication.autocreate.mode=disabled).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'trendstream_cdc') THEN
        CREATE PUBLICATION trendstream_cdc FOR TABLE orders, order_items, inventory, users;
    END IF;
END
$$;
