"""Raw export columns -> canonical transactions (SPEC §3 parsing rules), as expressions.

The canonical frame has one row per input row:

``source`` (u16), ``line`` (u64), ``customer_id`` (str), ``ts`` (datetime, local),
``amount_minor`` (i64: amount x 10^scale, exact), ``order_key`` (u64 hash of the order id, or null),
``currency`` (str or null), and the raw text of the required columns for error reports.
Rows that break a rule carry a null in the parsed column and a non-null raw value.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

import polars as pl

from segcli.config import InputConfig
from segcli.errors import InputDataError

# Recognised headers per role, English and Chinese; matched exactly, then case-insensitively,
# then ignoring case, spaces, "_" and "-" (Superstore's "Customer ID", "Order Date").
ALIASES: dict[str, tuple[str, ...]] = {
    "customer_id": ("customer_id", "customer", "customerid", "customer_no", "cust_id", "client_id", "member_id",
                    "user_id", "客户编号", "客户id", "客户ID", "客户号", "客户", "会员号", "会员编号", "会员id",
                    "会员ID", "用户id", "用户ID", "用户编号", "顾客编号"),
    "date": ("order_date", "date", "order_time", "transaction_date", "transaction_time", "purchase_date",
             "invoice_date", "invoicedate", "timestamp", "datetime", "created_at", "交易日期", "订单日期",
             "交易时间", "下单时间", "订单时间", "日期", "购买日期", "支付时间"),
    "amount": ("amount", "revenue", "sales", "total", "order_amount", "net_amount", "value", "price", "dollar_value",
               "金额", "实付金额", "交易金额", "订单金额", "支付金额", "销售额", "实收金额"),
    "order_id": ("order_id", "orderid", "order_no", "order_number", "invoice", "invoice_no", "invoiceno",
                 "transaction_id", "订单号", "订单编号", "交易号", "单号"),
    "currency": ("currency", "currency_code", "币种", "货币"),
}
REQUIRED = ("customer_id", "date", "amount")
INT64_MAX = 2**63 - 1  # amounts are kept as Int64 minor units: |amount| x 10^amount_scale must fit
EXCEL_EPOCH = pl.date(1899, 12, 30)  # Excel's day 0 (it counts 1900 as a leap year)
_INDEX = "__segcli_row__"  # the row index, named so that no input column clashes with it


def _clean(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip()


def _shown(names: list[str]) -> str:
    """Header names as a person wrote them: Polars names the 2nd, 3rd... blank header
    ``_duplicated_0``, ``_duplicated_1``; a blank one is shown as (blank)."""
    return ", ".join(re.sub(r"^_duplicated_\d+$", "", _clean(n)) or "(blank)" for n in names) or "(none)"


def header_key(name: str) -> str:
    """A header as matched loosely: case, spaces, ``_`` and ``-`` ignored (``Customer ID`` =
    ``customer_id``)."""
    return re.sub(r"[\s_\-]+", "", _clean(name)).lower()


@dataclass(frozen=True)
class ColumnMap:
    """Which raw column plays which role in one file (``None`` for an absent optional)."""

    customer_id: str
    date: str
    amount: str
    order_id: str | None
    currency: str | None


def _find(names: list[str], wanted: tuple[str, ...]) -> str | None:
    """The header matching the first wanted name: exactly, else ignoring case, else loosely."""
    levels = (_clean, lambda n: _clean(n).lower(), header_key)
    for norm in levels:
        table: dict[str, str] = {}
        for n in names:
            table.setdefault(norm(n), n)  # the leftmost column wins a tie
        hit = next((table[norm(w)] for w in wanted if norm(w) in table), None)
        if hit is not None:
            return hit
    return None


def resolve_columns(names: list[str], configured: dict[str, str], file: str, *, hint: str | None = None) -> ColumnMap:
    """Map roles to header names: configured names first, else the known aliases.

    ``hint`` is one more detail line for a missing column (e.g. how to skip title rows).
    """
    found: dict[str, str | None] = {}
    missing: list[str] = []
    for role in ALIASES:
        wanted = configured.get(role, "")
        if wanted:
            hit = _find(names, (wanted,))
            if hit is None:
                raise InputDataError(
                    f"{file}: column '{wanted}' (configured as input.columns.{role}) is not in the file",
                    [f"columns in the file: {_shown(names)}"])
        else:
            hit = _find(names, ALIASES[role])
        if hit is None and role in REQUIRED:
            missing.append(role)
        found[role] = hit
    if missing:
        raise InputDataError(
            f"{file}: missing required column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
            [f"columns in the file: {_shown(names)}",
             *(f"{role}: name it in [input.columns] or use one of: {', '.join(ALIASES[role][:6])} "
               f"(or map it with --column {role}=HEADER)" for role in missing),
             *([hint] if hint else [])])
    return ColumnMap(**found)  # type: ignore[arg-type]


# Headers that look like an order id or a currency (on header_key): named in a hint when no
# column was mapped to that role, so that orders are not silently made of customer-days.
_ORDER_LIKE = re.compile(r"order|invoice|receipt|transaction|txn|bill|订单|发票|交易|单据|流水|单号")
_ID_LIKE = re.compile(r"(id|no|nr|num|number|ref|reference|code|key)$|#|号|编号|编码")
_NOT_AN_ID = re.compile(r"date|time|day|amount|qty|quantity|status|type|priority|mode|日期|时间|金额|数量|状态|类型")
_CURRENCY_LIKE = re.compile(r"currency|ccy|curr$|币")


def unmapped_hints(names: list[str], cols: ColumnMap) -> list[str]:
    """Sentences for headers that look like an unmapped order id or currency."""
    used = {c for c in cols.__dict__.values() if c}
    hints = []
    for name in names:
        key, shown = header_key(name), _clean(name)
        quoted = shlex.quote(shown) if "'" in shown else f"'{shown}'"
        if name in used or not key:
            continue
        if cols.order_id is None and _ORDER_LIKE.search(key) and _ID_LIKE.search(key) and not _NOT_AN_ID.search(key):
            hints.append(f"'{shown}' looks like an order id: map it with --column order_id={quoted} "
                         "(without it, an order is a customer's rows with one timestamp)")
        elif cols.currency is None and _CURRENCY_LIKE.search(key):
            hints.append(f"'{shown}' looks like a currency: map it with --column currency={quoted} "
                         "(without it, several currencies in one run go unnoticed)")
    return hints


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


def currency_code(text: pl.Expr) -> pl.Expr:
    """A currency as written -> its code: stripped, upper case, null when empty.

    Per row this costs more than reading the column (0.55 s of CPU at 10^7 rows), and
    an export holds one or two spellings: the checks take the lowest and highest spelling
    and normalise those (:func:`segcli.loading.check_currencies`), so a run reads the
    normalised column only when the spellings differ."""
    return null_if_empty(text.str.strip_chars().str.to_uppercase())


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
        whole = pl.col(col).cast(pl.Int64, strict=False)
        # null (reported as too large for amount_scale) rather than a product that wraps around
        return pl.when(whole.abs() <= INT64_MAX // factor).then(whole * factor), pl.lit(False)
    if isinstance(dtype, pl.Decimal) and (dtype.scale or 0) <= scale:  # never more places than the scale
        return pl.col(col).cast(pl.Decimal(38, scale)).mul(factor).cast(pl.Int64, strict=False), pl.lit(False)
    if isinstance(dtype, pl.Decimal):
        scaled = pl.col(col).cast(pl.Float64) * factor
        return (pl.col(col).cast(pl.Decimal(38, scale)).mul(factor).cast(pl.Int64, strict=False),
                (scaled - scaled.round(0)).abs() > 1e-6)
    if dtype.is_float():
        # a float is read by its shortest decimal form (float32 12.34 is 12.34, not
        # 12.340000152587890625); it was rounded when that form has more places than the
        # scale, i.e. when the kept decimal is another float than the one stored
        dec = pl.col(col).cast(pl.String).cast(pl.Decimal(38, scale), strict=False)
        return dec.mul(factor).cast(pl.Int64, strict=False), (dec.cast(dtype) != pl.col(col)).fill_null(False)
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
        # %#z also takes "Z" (UTC, as ISO 8601 writes it) and "+08" (measured: 1.5x the time of %z
        # on offsets, half of it on the dates without one that most exports have)
        return (text.str.to_datetime(fmt.replace("%z", "%#z"), strict=False, time_unit="us")
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


def _row_hash(names: list[str], seed: int) -> pl.Expr:
    """A seeded 64-bit hash of a whole row's data columns, taken in name order so that two
    files with the same columns in another order give the same hash to the same row (the
    hash is of the values only; the file and line are not data)."""
    return pl.struct(*(pl.col(n) for n in sorted(names))).hash(seed=seed)


def mark_repeats(lf: pl.LazyFrame) -> pl.LazyFrame:
    """``repeat``: the row is identical to an earlier row of any input (input.dedupe).

    Run on all inputs at once, so that a row repeated across two files is dropped like one
    repeated within a file. The key is two seeded 64-bit hashes: comparing keys instead of
    rows saves the row encoding of every text column (at 10 million rows, 0.5 GB and 2.5 s
    less); a collision among n rows, which would drop a row that is not a repeat, has odds
    of n^2 / 2^129: about 1e-25 for 10 million rows.
    """
    return lf.with_columns(repeat=~pl.struct("row_hash", "row_hash1").is_first_distinct()).drop("row_hash1")


# A customer id that marks a total row (a finance workbook's last row): trimmed, any case, a
# trailing colon allowed. One anchored regex: no lower-cased copy of every id.
TOTAL_MARKER = r"(?i)^(合计|总计|小计|total|grand\s+total)[:：]?$"


def total_marker(customer_id: pl.Expr) -> pl.Expr:
    """Is the (stripped) customer id a total marker? Only a total row that sits last in its
    file is dropped (:func:`segcli.reading.total_rows` decides)."""
    return customer_id.str.contains(TOTAL_MARKER).fill_null(False)


def canonical(lf: pl.LazyFrame, schema: pl.Schema, cols: ColumnMap, cfg: InputConfig, source: int,
              first_line: int, plan: ParsePlan | None = None) -> pl.LazyFrame:
    """Parse one file's raw frame into the canonical transaction frame.

    Besides the parsed columns it carries flags: ``blank`` (every field empty: a blank line,
    or a spreadsheet's empty row), ``repeat`` (False: :func:`mark_repeats` sets it over all
    inputs, with ``plan.drop_repeats``, from ``row_hash`` and ``row_hash1``), ``tail_null``
    (the last column is empty, which a record with too few fields also leaves) and
    ``total_marker`` (the customer id is 合计, Total, ...); with ``plan.count_repeats`` also
    ``row_hash``, a 64-bit hash of the whole row. Identical rows share their date, so
    counting distinct hashes per date counts them with negligible odds of a collision
    (about n^2 / 2^65 per day's n rows) and no more memory than a column of integers.
    """
    plan = plan or ParsePlan(cfg.date_formats)
    names = list(schema.names())
    amount, extra = amount_expr(cols.amount, schema[cols.amount], cfg.amount_scale, plain=plan.plain_amounts)
    order = (pl.col(cols.order_id).cast(pl.String).str.strip_chars() if cols.order_id else pl.lit(None, pl.String))
    currency = pl.col(cols.currency).cast(pl.String) if cols.currency else pl.lit(None, pl.String)
    first = pl.col(names[0])
    first_blank = first.is_null()
    if schema[names[0]] == pl.String:
        first_blank = first_blank | (first.str.strip_chars() == "")
    blank = (pl.all_horizontal(first_blank, *(pl.col(n).is_null() for n in names[1:])) if plan.blank_rows
             else pl.lit(False))  # reading every column just to find none costs a tenth of a run
    # row hashes for identical rows across all inputs: counted, or flagged by mark_repeats
    row_hash = ([_row_hash(names, 0).alias("row_hash")] if plan.count_repeats or plan.drop_repeats else []) + (
        [_row_hash(names, 1).alias("row_hash1")] if plan.drop_repeats else [])
    return lf.with_row_index(_INDEX, offset=first_line).select(
        pl.lit(source, pl.UInt16).alias("source"),
        pl.col(_INDEX).cast(pl.UInt64).alias("line"),
        customer_id_expr(cols.customer_id, schema[cols.customer_id]).alias("customer_id"),
        timestamp_expr(cols.date, schema[cols.date], plan.formats, cfg.timezone).alias("ts"),
        amount.alias("amount_minor"),
        order.alias("order_id"),  # hashed to ``order_key`` below
        currency.alias("raw_currency"),  # as written; the checks read it, see currency_code
        extra.alias("amount_rounded"),
        pl.col(cols.customer_id).cast(pl.String).alias("raw_customer_id"),
        pl.col(cols.date).cast(pl.String).alias("raw_date"),
        pl.col(cols.amount).cast(pl.String).alias("raw_amount"),
        blank.alias("blank"),
        pl.lit(False).alias("repeat"),  # set over all inputs by mark_repeats (input.dedupe)
        (pl.col(names[-1]).is_null() if plan.blank_rows else pl.lit(False)).alias("tail_null"),
        *row_hash,
    ).with_columns(
        (pl.col("customer_id") if schema[cols.customer_id].is_numeric()
         else finish_customer_id(pl.col("customer_id"))).alias("customer_id"),
        order_key(pl.col("order_id")).alias("order_key"),
        currency_code(pl.col("raw_currency")).alias("currency"),
        (pl.lit(False) if schema[cols.customer_id].is_numeric() else total_marker(pl.col("customer_id")))
        .alias("total_marker"),
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
