"""Raw export columns -> canonical transactions (SPEC §3 parsing rules), as expressions.

The canonical frame has one row per input row:

``source`` (u16), ``line`` (u64), ``customer_id`` (str), ``ts`` (datetime, local),
``amount_minor`` (i64: amount x 10^scale, exact), ``order_key`` (u64 hash of the order id, or null),
``currency`` (str or null), and the raw text of the required columns for error reports.
Rows that break a rule carry a null in the parsed column and a non-null raw value.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from segcli.config import InputConfig
from segcli.errors import InputDataError

# Recognised headers per role, English and Chinese; matched exactly, then case-insensitively.
ALIASES: dict[str, tuple[str, ...]] = {
    "customer_id": ("customer_id", "customer", "customerid", "customer_no", "cust_id", "client_id", "member_id",
                    "user_id", "客户编号", "客户id", "客户ID", "客户号", "客户", "会员号", "会员编号", "会员id",
                    "会员ID", "用户id", "用户ID", "用户编号", "顾客编号"),
    "date": ("order_date", "date", "order_time", "transaction_date", "transaction_time", "purchase_date",
             "invoice_date", "invoicedate", "timestamp", "datetime", "created_at", "交易日期", "订单日期",
             "交易时间", "下单时间", "订单时间", "日期", "购买日期", "支付时间"),
    "amount": ("amount", "revenue", "sales", "total", "order_amount", "net_amount", "value", "price",
               "金额", "实付金额", "交易金额", "订单金额", "支付金额", "销售额", "实收金额"),
    "order_id": ("order_id", "orderid", "order_no", "order_number", "invoice", "invoice_no", "invoiceno",
                 "transaction_id", "订单号", "订单编号", "交易号", "单号"),
    "currency": ("currency", "currency_code", "币种", "货币"),
}
REQUIRED = ("customer_id", "date", "amount")
EXCEL_EPOCH = pl.date(1899, 12, 30)  # Excel's day 0 (it counts 1900 as a leap year)
_INDEX = "__segcli_row__"  # the row index, named so that no input column clashes with it


def _clean(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip()


@dataclass(frozen=True)
class ColumnMap:
    """Which raw column plays which role in one file (``None`` for an absent optional)."""

    customer_id: str
    date: str
    amount: str
    order_id: str | None
    currency: str | None


def resolve_columns(names: list[str], configured: dict[str, str], file: str, *, hint: str | None = None) -> ColumnMap:
    """Map roles to header names: configured names first, else the known aliases.

    ``hint`` is one more detail line for a missing column (e.g. how to skip title rows).
    """
    cleaned = {_clean(n): n for n in names}
    lowered = {_clean(n).lower(): n for n in names}
    found: dict[str, str | None] = {}
    missing: list[str] = []
    for role in ALIASES:
        wanted = configured.get(role, "")
        if wanted:
            hit = cleaned.get(wanted) or lowered.get(wanted.lower())
            if hit is None:
                raise InputDataError(
                    f"{file}: column '{wanted}' (configured as input.columns.{role}) is not in the file",
                    [f"columns in the file: {', '.join(_clean(n) for n in names)}"])
        else:
            hit = next((cleaned[a] for a in ALIASES[role] if a in cleaned), None) or next(
                (lowered[a.lower()] for a in ALIASES[role] if a.lower() in lowered), None)
        if hit is None and role in REQUIRED:
            missing.append(role)
        found[role] = hit
    if missing:
        raise InputDataError(
            f"{file}: missing required column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
            [f"columns in the file: {', '.join(_clean(n) for n in names) or '(none)'}",
             *(f"{role}: name it in [input.columns] or use one of: {', '.join(ALIASES[role][:6])}" for role in missing),
             *([hint] if hint else [])])
    return ColumnMap(**found)  # type: ignore[arg-type]


def customer_id_expr(col: str, dtype: pl.DataType) -> pl.Expr:
    """Text id, whitespace stripped; ``123.0`` (a spreadsheet's number) becomes ``123``."""
    c = pl.col(col)
    if dtype.is_integer():
        return c.cast(pl.String)
    if dtype.is_float():
        return pl.when(c == c.floor()).then(c.cast(pl.Int64).cast(pl.String)).otherwise(c.cast(pl.String))
    return c.cast(pl.String).str.strip_chars()


def finish_customer_id(text: pl.Expr) -> pl.Expr:
    """Second step of :func:`customer_id_expr` on its result *as a column*: ``123.0`` -> ``123``,
    empty -> null. (Polars repeats a sub-expression used twice in one expression, so the
    stripped text is made a column first.)"""
    # one anchored regex (null where it does not match) costs a third of a gated replace
    # when/then, not .replace("", None): that one leaves the streaming engine (2x the memory)
    return pl.when(text == "").then(None).otherwise(pl.coalesce(text.str.extract(r"^(-?\d+)\.0+$", 1), text))


ORDER_SEED = 20240101  # seed of the order-id hash (fixed: runs are reproducible)


def order_key(order_id: pl.Expr) -> pl.Expr:
    """A seeded 64-bit hash of the (stripped) order id text, null when null or empty.

    Orders are told apart by it, because hashing a text key is what costs a group-by most
    (and a spill of the rows is smaller). Two different order ids of one customer would
    have to share a hash to be merged: odds of about m^2 / 2^65 for a customer with m
    orders, below 10^-10 summed over 10^8 rows.
    """
    return pl.when(order_id != "").then(order_id.hash(ORDER_SEED))


def null_if_empty(text: pl.Expr) -> pl.Expr:
    return pl.when(text == "").then(None).otherwise(text)


def clean_amount_text(text: pl.Expr) -> pl.Expr:
    """Normalise money text: currency marks, thousands separators, (12.00) for a return."""
    text = text.str.strip_chars()
    negative = text.str.starts_with("(") & text.str.ends_with(")")
    body = text.str.replace_all(r"(?i)[()\s,¥￥$€£]|RMB|CNY|元", "")
    return pl.when(negative).then(pl.lit("-") + body.str.strip_chars_start("-")).otherwise(body)


def amount_expr(col: str, dtype: pl.DataType, scale: int, *, plain: bool = False) -> tuple[pl.Expr, pl.Expr]:
    """(amount in minor units as Int64 or null when unparsable, 'had more places' flag).

    ``plain`` skips the clean-up of currency marks and separators (a regex over every row)
    when the column holds plain numbers only; :func:`amount_hits` tells whether it does.
    """
    factor = 10**scale
    if dtype.is_integer():
        return pl.col(col).cast(pl.Int64) * factor, pl.lit(False)
    if isinstance(dtype, pl.Decimal) and (dtype.scale or 0) <= scale:  # never more places than the scale
        return pl.col(col).cast(pl.Decimal(38, scale)).mul(factor).cast(pl.Int64), pl.lit(False)
    if isinstance(dtype, pl.Decimal) or dtype.is_float():
        scaled = pl.col(col).cast(pl.Float64) * factor
        return pl.col(col).cast(pl.Decimal(38, scale)).mul(factor).cast(pl.Int64), (scaled - scaled.round(0)).abs() > 1e-6
    stripped = pl.col(col).cast(pl.String).str.strip_chars()
    text = stripped if plain else clean_amount_text(stripped)
    dec = text.cast(pl.Decimal(38, scale), strict=False)
    # more places than the scale, ignoring trailing zeros (found without a regex: it is cheaper)
    places = text.str.strip_chars_end("0").str.len_bytes() - text.str.find(".", literal=True) - 1
    return (dec * factor).cast(pl.Int64, strict=False), (places > scale).fill_null(False)


def plain_amounts(sample: pl.Series) -> bool:
    """True when every value of the sample parses as a plain number (no marks to clean)."""
    text = sample.cast(pl.String).str.strip_chars()
    return bool(pl.select(text.cast(pl.Decimal(38, 8), strict=False).is_null() & text.is_not_null()
                          & (text != "")).to_series().sum() == 0)


def _parse_date(text: pl.Expr, fmt: str, timezone: str) -> pl.Expr:
    if "%z" in fmt:
        return (text.str.to_datetime(fmt, strict=False, time_unit="us")
                .dt.convert_time_zone(timezone).dt.replace_time_zone(None))
    if "%H" in fmt:
        return text.str.to_datetime(fmt, strict=False, time_unit="us")
    return text.str.to_date(fmt, strict=False).cast(pl.Datetime("us"))


def _excel_serial(text: pl.Expr) -> pl.Expr:
    """Excel serial day numbers (e.g. 45356) from spreadsheets saved as CSV."""
    days = text.cast(pl.Int64, strict=False)
    return pl.when((text.str.len_bytes() == 5) & (days >= 10000)).then(
        (EXCEL_EPOCH + pl.duration(days=days)).cast(pl.Datetime("us")))


def timestamp_expr(col: str, dtype: pl.DataType, formats: tuple[str, ...], timezone: str) -> pl.Expr:
    """Local naive timestamp: the first configured format that parses; offsets -> ``timezone``."""
    c = pl.col(col)
    if isinstance(dtype, pl.Datetime):
        ts = c.dt.convert_time_zone(timezone).dt.replace_time_zone(None) if dtype.time_zone else c
        return ts.dt.cast_time_unit("us")
    if isinstance(dtype, pl.Date):
        return c.cast(pl.Datetime("us"))
    if dtype.is_numeric():
        return (EXCEL_EPOCH + pl.duration(days=c.cast(pl.Int64))).cast(pl.Datetime("us"))
    text = c.cast(pl.String).str.strip_chars()
    return pl.coalesce(*(_parse_date(text, fmt, timezone) for fmt in formats), _excel_serial(text))


def formats_for(sample: pl.Series, formats: tuple[str, ...], timezone: str) -> tuple[str, ...]:
    """The leading formats that a sample of date values needs (at least the first).

    Every format costs a parse of every row, and most exports use one layout. Keeping a
    *prefix* of the configured list keeps first-match-wins exact for every value the prefix
    parses; values it cannot parse are checked against the other formats by
    :func:`date_hits` in the stats pass, and any format that parses one is added back.
    """
    text = sample.cast(pl.String).str.strip_chars()
    frame = pl.DataFrame({"t": text}).filter(pl.col("t").is_not_null() & (pl.col("t") != ""))
    first_match = pl.coalesce(*(pl.when(_parse_date(pl.col("t"), f, timezone).is_not_null()).then(pl.lit(i))
                                for i, f in enumerate(formats)))
    used = frame.select(first_match.max()).item()
    used = 1 if used is None else used + 1
    return formats[:used]


def date_hits(formats: tuple[str, ...], timezone: str) -> list[pl.Expr]:
    """Per format: does it parse any date left unparsed (``date_hit_<i>``)? Evaluated on the
    rows whose ``ts`` is null only."""
    text = pl.col("raw_date").str.strip_chars()
    left = text.filter(pl.col("ts").is_null() & (text != ""))
    return [_parse_date(left, fmt, timezone).is_not_null().any().alias(f"date_hit_{i}")
            for i, fmt in enumerate(formats)]


def amount_hits(scale: int) -> pl.Expr:
    """Does any amount left unparsed by the plain cast parse once cleaned (``amount_hit``)?"""
    left = pl.col("raw_amount").filter(pl.col("amount_minor").is_null() & pl.col("raw_amount").is_not_null())
    return clean_amount_text(left).cast(pl.Decimal(38, scale), strict=False).is_not_null().any().alias("amount_hit")


# Rows of each file sampled to choose its parse plan (date formats, amount clean-up).
PLAN_SAMPLE_ROWS = 2000
# Identical rows are counted (a 64-bit hash of every row, distinct hashes per day) when the
# inputs hold at most this many rows. Measured on 10 million rows: under a second, but 300 MB
# more memory, growing with the rows; above the limit only `validate` (which always counts)
# and `input.dedupe` pay for it, and the metadata records the count as null.
REPEAT_COUNT_MAX_ROWS = 2_000_000


@dataclass(frozen=True)
class ParsePlan:
    """How one file's columns are parsed: which date formats, whether amounts need cleaning."""

    formats: tuple[str, ...]
    plain_amounts: bool = False
    count_repeats: bool = False  # add ``row_hash`` to count rows identical to an earlier one
    drop_repeats: bool = False  # flag them (``repeat``) to drop them: input.dedupe
    blank_rows: bool = True  # text and spreadsheets have blank lines/rows; Parquet does not


def _row_key(names: list[str]) -> pl.Expr:
    """A 128-bit key of a whole row: two seeded 64-bit hashes.

    Comparing keys instead of rows saves the row encoding of every text column (at 10
    million rows, 0.5 GB and 2.5 s less); a collision among n rows, which would drop a row
    that is not a repeat, has odds of n^2 / 2^129: about 1e-25 for 10 million rows.
    """
    row = pl.struct(*(pl.col(n) for n in names))
    return pl.struct(row.hash(seed=0).alias("h0"), row.hash(seed=1).alias("h1"))


def canonical(lf: pl.LazyFrame, schema: pl.Schema, cols: ColumnMap, cfg: InputConfig, source: int,
              first_line: int, plan: ParsePlan | None = None) -> pl.LazyFrame:
    """Parse one file's raw frame into the canonical transaction frame.

    Besides the parsed columns it carries flags: ``blank`` (every field empty: a blank line,
    or a spreadsheet's empty row), ``repeat`` (identical to an earlier row in every column;
    only with ``plan.drop_repeats``) and ``tail_null`` (the last column is empty, which a
    record with too few fields also leaves); with ``plan.count_repeats`` also ``row_hash``,
    a 64-bit hash of the whole row. Identical rows share their date, so counting distinct
    hashes per (file, date) counts them with negligible odds of a collision (about
    n^2 / 2^65 per day's n rows) and no more memory than a column of integers.
    """
    plan = plan or ParsePlan(cfg.date_formats)
    names = list(schema.names())
    amount, extra = amount_expr(cols.amount, schema[cols.amount], cfg.amount_scale, plain=plan.plain_amounts)
    order = (pl.col(cols.order_id).cast(pl.String).str.strip_chars() if cols.order_id else pl.lit(None, pl.String))
    currency = (pl.col(cols.currency).cast(pl.String).str.strip_chars().str.to_uppercase()
                if cols.currency else pl.lit(None, pl.String))
    first = pl.col(names[0])
    first_blank = first.is_null()
    if schema[names[0]] == pl.String:
        first_blank = first_blank | (first.str.strip_chars() == "")
    blank = (pl.all_horizontal(first_blank, *(pl.col(n).is_null() for n in names[1:])) if plan.blank_rows
             else pl.lit(False))  # reading every column just to find none costs a tenth of a run
    repeat = ~_row_key(names).is_first_distinct() if plan.drop_repeats else pl.lit(False)
    row_hash = [pl.struct(*(pl.col(n) for n in names)).hash(seed=0).alias("row_hash")] if plan.count_repeats else []
    return lf.with_row_index(_INDEX, offset=first_line).select(
        pl.lit(source, pl.UInt16).alias("source"),
        pl.col(_INDEX).cast(pl.UInt64).alias("line"),
        customer_id_expr(cols.customer_id, schema[cols.customer_id]).alias("customer_id"),
        timestamp_expr(cols.date, schema[cols.date], plan.formats, cfg.timezone).alias("ts"),
        amount.alias("amount_minor"),
        order.alias("order_id"),  # hashed to ``order_key`` below
        currency.alias("currency"),
        extra.alias("amount_rounded"),
        pl.col(cols.customer_id).cast(pl.String).alias("raw_customer_id"),
        pl.col(cols.date).cast(pl.String).alias("raw_date"),
        pl.col(cols.amount).cast(pl.String).alias("raw_amount"),
        blank.alias("blank"),
        repeat.alias("repeat"),
        (pl.col(names[-1]).is_null() if plan.blank_rows else pl.lit(False)).alias("tail_null"),
        *row_hash,
    ).with_columns(
        (pl.col("customer_id") if schema[cols.customer_id].is_numeric()
         else finish_customer_id(pl.col("customer_id"))).alias("customer_id"),
        order_key(pl.col("order_id")).alias("order_key"),
        null_if_empty(pl.col("currency")).alias("currency"),
    ).drop("order_id")


# Row rules, in report order: (name, column, violation predicate on the canonical frame).
RULES: tuple[tuple[str, str, pl.Expr], ...] = (
    ("null or empty customer id", "customer_id", pl.col("customer_id").is_null()),
    ("unparsable date", "date", pl.col("ts").is_null()),
    ("unparsable amount", "amount", pl.col("amount_minor").is_null()),
)


def invalid_expr() -> pl.Expr:
    """True for a row that breaks any rule."""
    return pl.any_horizontal(*(pred for _, _, pred in RULES))
