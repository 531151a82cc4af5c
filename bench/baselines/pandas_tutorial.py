"""The RFM code of the usual pandas tutorials: whole file in, dict-agg with a lambda for recency.

Read as in pandas_namedagg.py (decimal amount cast to float64 in Arrow), so the difference
between the two is the aggregation code alone.
"""
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

table = pq.read_table(sys.argv[1])
i = table.schema.get_field_index("amount")
df = table.set_column(i, "amount", table["amount"].cast(pa.float64())).to_pandas()
del table
snapshot = df["order_time"].max() + pd.Timedelta(days=1)
rfm = df.groupby("customer_id").agg({
    "order_time": lambda x: (snapshot - x.max()).days,
    "order_id": "nunique",
    "amount": "sum",
})
rfm.columns = ["recency", "frequency", "monetary"]
print(f"rows={len(rfm)}")
