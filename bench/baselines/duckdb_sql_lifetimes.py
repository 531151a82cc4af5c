"""The lifetimes summary in DuckDB SQL: what a data engineer would write instead of segcli.

    python duckdb_sql_lifetimes.py EXPORT.parquet OUT.parquet [D|W]

The same per-customer values as ``segcli rfm --style lifetimes --freq D`` (or ``W``) with the
default config (SPEC §3 "lifetimes style"; ``bench/check_duckdb_sql.py --lifetimes`` compares
them customer by customer):

* an order is the rows sharing (customer_id, order_id), or without an order id one customer's
  rows with the same timestamp; it is dated by its earliest non-negative row and all its rows,
  returns included, net into that date; a return-only order belongs to no purchase, so each of
  its rows stays on its own date;
* a period is a day (D) or a Monday-start week (W); it counts when it holds a purchase: an
  order with net > 0, or net = 0 without a return; its value is the net of everything dated
  in it, in integer minor units of the export's decimal scale (exact);
* per customer with a purchase: frequency = counted periods - 1; recency = periods from the
  first counted period to the last; T = periods from the first to the as-of period (the
  latest transaction date, segcli's default); monetary_value = mean value of the counted
  periods after the first, 0 if none.

Written without a window: one group-by of the rows into orders; only a return-only order whose
returns fall into several periods is read again row by row (a semi-join). A first version that
dated each order-day by a window over the orders took twice the time (6.7-7.2 s against
3.6 s at 10M, same values).

Not done (segcli does them): input checks, identical-row and window handling, the run record.
Output: zstd Parquet sorted by customer_id. DuckDB uses every core and its default memory limit.
"""
import sys

import duckdb

src = sys.argv[1].replace("'", "''")
out = sys.argv[2].replace("'", "''")
freq = sys.argv[3] if len(sys.argv) > 3 else "D"
if freq not in ("D", "W"):
    sys.exit(f"freq must be D or W, not {freq!r}")
con = duckdb.connect()
amount_type = con.execute(f"DESCRIBE SELECT amount FROM read_parquet('{src}')").fetchone()[1]  # e.g. DECIMAL(12,2)
scale = int(amount_type.rstrip(")").split(",")[1]) if amount_type.startswith("DECIMAL") else 0


def period(day: str) -> str:
    """Whole days, or Monday-start weeks, since Monday 1970-01-05."""
    days = f"({day} - DATE '1970-01-05')"
    return days if freq == "D" else f"({days} // 7)"


QUERY = f"""
WITH src AS (
    SELECT customer_id, order_id,
           CASE WHEN order_id IS NULL THEN order_time END AS order_ts,  -- no order id: one order per timestamp
           order_time::DATE                               AS day,
           CAST(amount * {10 ** scale} AS BIGINT)         AS minor      -- exact integer minor units
    FROM read_parquet('{src}')
),
orders AS (           -- dated by the earliest non-negative row; NULL: a return-only order
    SELECT customer_id, order_id, order_ts, sum(minor) AS net, min(minor) AS min_minor,
           min(day) FILTER (WHERE minor >= 0) AS order_date, min(day) AS first_day, max(day) AS last_day
    FROM src
    GROUP BY ALL
),
parts AS (            -- an order's net in its period; a return-only order over several periods, per row
    SELECT customer_id, {period("coalesce(order_date, first_day)")} AS period, net, min_minor
    FROM orders
    WHERE order_date IS NOT NULL OR {period("first_day")} = {period("last_day")}
    UNION ALL
    SELECT s.customer_id, {period("s.day")}, s.minor, s.minor
    FROM src s
    SEMI JOIN (SELECT * FROM orders
               WHERE order_date IS NULL AND {period("first_day")} <> {period("last_day")}) o
         ON s.customer_id = o.customer_id AND s.order_id IS NOT DISTINCT FROM o.order_id
            AND s.order_ts IS NOT DISTINCT FROM o.order_ts
    WHERE s.minor < 0
),
periods AS (
    SELECT customer_id, period, sum(net) AS value,
           bool_or(net > 0 OR (net = 0 AND min_minor >= 0)) AS bought
    FROM parts
    GROUP BY ALL
),
customers AS (
    SELECT customer_id, count(*) AS n, min(period) AS first, max(period) AS last,
           sum(value) AS total, arg_min(value, period) AS first_value
    FROM periods
    WHERE bought
    GROUP BY customer_id
)
SELECT customer_id,
       n - 1                                                          AS frequency,
       last - first                                                   AS recency,
       (SELECT {period("max(order_time)::DATE")} FROM read_parquet('{src}')) - first AS T,
       CASE WHEN n > 1 THEN ((total - first_value)::DOUBLE / {10 ** scale}) / (n - 1) ELSE 0.0 END
                                                                      AS monetary_value
FROM customers
ORDER BY customer_id
"""

rows = con.execute(f"COPY ({QUERY}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)").fetchone()[0]
print(f"rows={rows}")
