"""The segmentation job in DuckDB SQL: what a data engineer would write instead of segcli.

    python duckdb_sql_segment.py EXPORT.parquet OUT.parquet

Same per-customer figures as ``segcli segment`` with the default config (SPEC §3-§4;
``bench/check_duckdb_sql.py`` compares them customer by customer):

* rows netted per order (customer_id, order_id); an order's date is the earliest date among
  its non-negative rows; a purchase is an order with net > 0, or net = 0 without a return;
* per customer: frequency (purchases), monetary (net of every row, returns included, summed
  exactly as DECIMAL), last_purchase, recency_days to the as-of date (the latest transaction
  date, segcli's default);
* r/f/m scores 1..5: ``1 + floor(5 * (rank_min - 1) / n)`` ranking worst to best, the tie
  group holding the best value gets 5, a column where everyone holds the same value gets 3;
  customers without a purchase get R = F = 1;
* Pareto: monetary clipped at 0, descending, ties by customer_id; cum_share; class A = the
  smallest prefix reaching 80% of the total (the crossing customer included), B up to 95%,
  compared exactly in integer minor units;
* tier: VIP (zhixin) = class A, recency_days <= 365, monetary > 0, at most floor(0.20 N) of
  them by monetary descending then customer_id; everyone else yuxin.

Not done (segcli does them): input checks, orders without an order id, clusters, RFM segment
names, VIP groups, service terms, the run record. Output: zstd Parquet sorted by customer_id.
DuckDB uses every core and its default memory limit.
"""
import sys

import duckdb

BINS, HEAD, B_SHARE, ACTIVE_DAYS, MAX_SHARE = 5, "0.80", "0.95", 365, "0.20"

src = sys.argv[1].replace("'", "''")
out = sys.argv[2].replace("'", "''")
con = duckdb.connect()
# money in integer minor units of the export's own decimal scale (exact sums and comparisons)
amount_type = con.execute(f"DESCRIBE SELECT amount FROM read_parquet('{src}')").fetchone()[1]  # e.g. DECIMAL(12,2)
scale = int(amount_type.rstrip(")").split(",")[1]) if amount_type.startswith("DECIMAL") else 0


def score(rank: str, best: str, all_equal: str) -> str:
    """SPEC §3: tie-safe bins, the best tie group on top, no spread -> the middle score."""
    return (f"CASE WHEN {all_equal} THEN {(BINS + 1) // 2} WHEN {best} THEN {BINS} "
            f"ELSE 1 + ({BINS} * ({rank} - 1)) // n END")


QUERY = f"""
WITH orders AS (      -- one row per order: rows netted, returns included
    SELECT customer_id,
           sum(amount)                                      AS net,
           min(amount)                                      AS min_amount,
           min(order_time::DATE) FILTER (WHERE amount >= 0) AS order_date,
           max(order_time::DATE)                            AS last_row_date
    FROM read_parquet('{src}')
    GROUP BY customer_id, order_id
),
customers AS (
    SELECT customer_id,
           count(*) FILTER (WHERE purchase)        AS frequency,
           sum(net)                                AS monetary,
           max(order_date) FILTER (WHERE purchase) AS last_purchase,
           max(last_row_date)                      AS last_row_date
    FROM (SELECT *, net > 0 OR (net = 0 AND min_amount >= 0) AS purchase FROM orders)
    GROUP BY customer_id
),
features AS (
    SELECT customer_id, frequency, monetary, last_purchase,
           max(last_row_date) OVER () - last_purchase  AS recency_days,   -- as-of = latest date
           CAST(monetary * {10 ** scale} AS BIGINT)    AS monetary_minor,
           count(*) OVER ()                            AS n
    FROM customers
),
ranked AS (           -- rank() = rank_min, worst to best; no purchase (NULL) is the worst recency
    SELECT *,
           rank() OVER (ORDER BY recency_days DESC NULLS FIRST) AS r_rank,
           rank() OVER (ORDER BY frequency)                     AS f_rank,
           rank() OVER (ORDER BY monetary_minor)                AS m_rank,
           min(recency_days) OVER ()   AS r_min, max(recency_days) OVER () AS r_max,
           count(recency_days) OVER () AS r_count,
           min(frequency) OVER ()      AS f_min, max(frequency) OVER ()    AS f_max,
           min(monetary_minor) OVER () AS m_min, max(monetary_minor) OVER () AS m_max
    FROM features
),
scored AS (
    SELECT customer_id, frequency, monetary, monetary_minor, last_purchase, recency_days, n,
           CASE WHEN frequency = 0 THEN 1 ELSE
               {score("r_rank", "recency_days = r_min", "r_min = r_max AND r_count = n")} END AS r_score,
           CASE WHEN frequency = 0 THEN 1 ELSE
               {score("f_rank", "frequency = f_max", "f_min = f_max")} END AS f_score,
           {score("m_rank", "monetary_minor = m_max", "m_min = m_max")} AS m_score,
           greatest(monetary_minor, 0) AS x
    FROM ranked
),
pareto AS (
    SELECT *,
           sum(x) OVER (ORDER BY x DESC, customer_id ROWS UNBOUNDED PRECEDING) AS cum,
           sum(x) OVER () AS total
    FROM scored
),
classed AS (          -- A while the revenue before the customer is below 80% of the total
    SELECT *,
           CASE WHEN total = 0 THEN 0.0 ELSE cum::DOUBLE / total::DOUBLE END AS cum_share,
           CASE WHEN total > 0 AND (cum - x) < {HEAD} * total THEN 'A'
                WHEN total > 0 AND (cum - x) < {B_SHARE} * total THEN 'B'
                ELSE 'C' END AS pareto_class
    FROM pareto
),
candidates AS (
    SELECT *, coalesce(pareto_class = 'A' AND recency_days <= {ACTIVE_DAYS} AND monetary_minor > 0, false)
              AS candidate
    FROM classed
),
seated AS (
    SELECT *, row_number() OVER (PARTITION BY candidate ORDER BY monetary_minor DESC, customer_id) AS seat
    FROM candidates
)
SELECT customer_id,
       CASE WHEN candidate AND seat <= floor({MAX_SHARE} * n) THEN 'zhixin' ELSE 'yuxin' END AS tier,
       recency_days, frequency, monetary::DOUBLE AS monetary, last_purchase,
       r_score, f_score, m_score, cum_share, pareto_class
FROM seated
ORDER BY customer_id
"""

rows = con.execute(f"COPY ({QUERY}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)").fetchone()[0]
print(f"rows={rows}")
