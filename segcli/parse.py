"""Raw export columns -> canonical transactions (SPEC §3 parsing rules), as expressions.

The canonical frame has one row per input row:

``source`` (u16), ``line`` (u64), ``customer_id`` (str), ``ts`` (datetime, local),
``amount_minor`` (i64: amount x 10^scale, exact), ``order_id`` (str or null),
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


def resolve_columns(names: list[str], configured: dict[str, str], file: str) -> ColumnMap:
    """Map roles to header names: configured names first, else the known aliases."""
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
             *(f"{role}: name it in [input.columns] or use one of: {', '.join(ALIASES[role][:6])}" for role in missing)])
    return ColumnMap(**found)  # type: ignore[arg-type]


def customer_id_expr(col: str, dtype: pl.DataType) -> pl.Expr:
    """Text id, whitespace stripped; ``123.0`` (a spreadsheet's number) becomes ``123``."""
    c = pl.col(col)
    if dtype.is_integer():
        return c.cast(pl.String)
    if dtype.is_float():
        return pl.when(c == c.floor()).then(c.cast(pl.Int64).cast(pl.String)).otherwise(c.cast(pl.String))
    text = c.cast(pl.String).str.strip_chars()
    text = text.str.replace(r"^(-?\d+)\.0+$", "$1")
    return pl.when(text == "").then(None).otherwise(text)


def _amount_text(col: str) -> pl.Expr:
    """Normalise money text: currency marks, thousands separators, (12.00) for a return."""
    text = pl.col(col).cast(pl.String).str.strip_chars()
    negative = text.str.starts_with("(") & text.str.ends_with(")")
    body = text.str.replace_all(r"[()\s,¥￥$€£]|RMB|CNY|元", "")
    return pl.when(negative).then(pl.lit("-") + body.str.strip_chars_start("-")).otherwise(body)


def amount_expr(col: str, dtype: pl.DataType, scale: int) -> tuple[pl.Expr, pl.Expr]:
    """(amount in minor units as Int64 or null when unparsable, 'had more places' flag)."""
    factor = 10**scale
    if dtype.is_integer():
        return pl.col(col).cast(pl.Int64) * factor, pl.lit(False)
    if isinstance(dtype, pl.Decimal) or dtype.is_float():
        scaled = pl.col(col).cast(pl.Float64) * factor
        return pl.col(col).cast(pl.Decimal(38, scale)).mul(factor).cast(pl.Int64), (scaled - scaled.round(0)).abs() > 1e-6
    text = _amount_text(col)
    dec = text.cast(pl.Decimal(38, scale), strict=False)
    extra = text.str.contains(r"\.\d{" + str(scale) + r"}\d*[1-9]")
    return (dec * factor).cast(pl.Int64, strict=False), extra.fill_null(False)


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
    parsed = []
    for fmt in formats:
        if "%z" in fmt:
            parsed.append(text.str.to_datetime(fmt, strict=False, time_unit="us")
                          .dt.convert_time_zone(timezone).dt.replace_time_zone(None))
        elif "%H" in fmt:
            parsed.append(text.str.to_datetime(fmt, strict=False, time_unit="us"))
        else:
            parsed.append(text.str.to_date(fmt, strict=False).cast(pl.Datetime("us")))
    # Excel serial day numbers (e.g. 45356) from spreadsheets saved as CSV.
    serial = pl.when(text.str.contains(r"^\d{5}$")).then(
        (EXCEL_EPOCH + pl.duration(days=text.cast(pl.Int64, strict=False))).cast(pl.Datetime("us")))
    return pl.coalesce(*parsed, serial)


def canonical(lf: pl.LazyFrame, schema: pl.Schema, cols: ColumnMap, cfg: InputConfig, source: int,
              first_line: int) -> pl.LazyFrame:
    """Parse one file's raw frame into the canonical transaction frame."""
    amount, extra = amount_expr(cols.amount, schema[cols.amount], cfg.amount_scale)
    order = (pl.col(cols.order_id).cast(pl.String).str.strip_chars() if cols.order_id else pl.lit(None, pl.String))
    currency = (pl.col(cols.currency).cast(pl.String).str.strip_chars().str.to_uppercase()
                if cols.currency else pl.lit(None, pl.String))
    return lf.with_row_index("line", offset=first_line).select(
        pl.lit(source, pl.UInt16).alias("source"),
        pl.col("line").cast(pl.UInt64),
        customer_id_expr(cols.customer_id, schema[cols.customer_id]).alias("customer_id"),
        timestamp_expr(cols.date, schema[cols.date], cfg.date_formats, cfg.timezone).alias("ts"),
        amount.alias("amount_minor"),
        pl.when(order == "").then(None).otherwise(order).alias("order_id"),
        pl.when(currency == "").then(None).otherwise(currency).alias("currency"),
        extra.alias("amount_rounded"),
        pl.col(cols.customer_id).cast(pl.String).alias("raw_customer_id"),
        pl.col(cols.date).cast(pl.String).alias("raw_date"),
        pl.col(cols.amount).cast(pl.String).alias("raw_amount"),
    )


# Row rules, in report order: (name, column, violation predicate on the canonical frame).
RULES: tuple[tuple[str, str, pl.Expr], ...] = (
    ("null or empty customer id", "customer_id", pl.col("customer_id").is_null()),
    ("unparsable date", "date", pl.col("ts").is_null()),
    ("unparsable amount", "amount", pl.col("amount_minor").is_null()),
)


def invalid_expr() -> pl.Expr:
    """True for a row that breaks any rule."""
    return pl.any_horizontal(*(pred for _, _, pred in RULES))
