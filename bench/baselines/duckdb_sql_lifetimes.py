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
WITH order_days AS (  -- each order's rows per day, in minor units
    SELECT customer_id, order_id,
           CASE WHEN order_id IS NULL THEN order_time END AS order_ts,
           order_time::DATE                               AS day,
           sum(CAST(amount * {10 ** scale} AS BIGINT))    AS net,
           min(CAST(amount * {10 ** scale} AS BIGINT))    AS min_minor,
           max(amount) >= 0                               AS has_purchase_row
    FROM read_parquet('{src}')
    GROUP BY ALL
),
dated AS (            -- an order's date: its earliest non-negative row (NULL: a return-only order)
    SELECT *, min(day) FILTER (WHERE has_purchase_row)
                  OVER (PARTITION BY customer_id, order_id, order_ts) AS order_date
    FROM order_days
),
orders AS (           -- dated orders whole; a return-only order per day of its returns
    SELECT customer_id, coalesce(order_date, day) AS day, sum(net) AS net, min(min_minor) AS min_minor
    FROM dated
    GROUP BY customer_id, order_id, order_ts, coalesce(order_date, day)
),
periods AS (
    SELECT customer_id, {period("day")} AS period, sum(net) AS value,
           bool_or(net > 0 OR (net = 0 AND min_minor >= 0)) AS bought
    FROM orders
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
