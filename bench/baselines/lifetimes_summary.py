"""lifetimes' frequency/recency/T/monetary_value summary, periods of a day, as-of = last transaction."""
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from lifetimes.utils import summary_data_from_transaction_data

table = pq.read_table(sys.argv[1], columns=["customer_id", "order_time", "amount"])
df = table.set_column(2, "amount", table["amount"].cast(pa.float64())).to_pandas()
del table
summary = summary_data_from_transaction_data(
    df, "customer_id", "order_time", monetary_value_col="amount",
    observation_period_end=df["order_time"].max(), freq="D",
)
print(f"rows={len(summary)}")
