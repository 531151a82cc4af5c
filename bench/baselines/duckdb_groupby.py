"""Bare per-customer group-by in DuckDB SQL: orders (distinct ids), last date, net spend.

The result is materialized as an Arrow table (not written), so this is the aggregation floor.
DuckDB uses every core and its default memory limit.
"""
import sys

import duckdb

path = sys.argv[1].replace("'", "''")
QUERY = f"""
SELECT customer_id,
       count(DISTINCT order_id)  AS frequency,
       max(order_time)::DATE     AS last_purchase,
       sum(amount)               AS monetary
FROM read_parquet('{path}')
GROUP BY customer_id
"""

rel = duckdb.connect().sql(QUERY)
# DuckDB 2.x names it to_arrow_table; 1.x arrow()
table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
print(f"rows={table.num_rows}")
