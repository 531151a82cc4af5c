"""pymc-marketing's CLV summary (frequency/recency/T/monetary_value), periods of a day."""
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from pymc_marketing.clv.utils import rfm_summary

table = pq.read_table(sys.argv[1], columns=["customer_id", "order_time", "amount"])
df = table.set_column(2, "amount", table["amount"].cast(pa.float64())).to_pandas()
del table
summary = rfm_summary(
    df, customer_id_col="customer_id", datetime_col="order_time", monetary_value_col="amount",
    observation_period_end=df["order_time"].max(), time_unit="D",
)
print(f"rows={len(summary)}")
