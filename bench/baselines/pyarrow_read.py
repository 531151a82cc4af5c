"""Floor for I/O: read the 3 columns an RFM needs (customer, date, amount) from the Parquet file."""
import sys

import pyarrow.parquet as pq

table = pq.read_table(sys.argv[1], columns=["customer_id", "order_time", "amount"])
print(f"rows={table.num_rows}")
