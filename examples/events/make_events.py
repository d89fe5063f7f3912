#!/usr/bin/env python3
"""Generate the example event streams in this folder: week.jsonl and tiny.jsonl.

Each line is one input to the simulator or the runtime: a Shopify webhook delivery (envelope with
headers and a body built from Shopify's published sample payloads) or one of aftercart's own
inputs (an SMS reply, a custom event). See README.md for the format and the stories.

Deterministic by construction: no random numbers, no clock. Ids are hashes of a label, so the
same script always writes the same bytes. Python 3.11, standard library only.

    python3 examples/events/make_events.py            # write both files and check them
    python3 examples/events/make_events.py --table    # also print the README tables
    python3 examples/events/make_events.py --check    # only check the files already written
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
# The project's copy of the fixtures wins; the shared copy is the fallback.
FIXTURE_DIRS = [HERE.parent.parent / "tests" / "fixtures" / "shopify", Path("/work/shared/fixtures/shopify")]

UTC = timezone.utc
SHOP_DOMAIN = "juniper-co.myshopify.com"
SHOP_ID = 548380009  # the shop id used throughout Shopify's sample payloads, kept as is
SHOP_ZONE = "America/New_York"  # Shopify renders payload timestamps in the shop's zone
API_VERSION = "2026-07"
SENDER = "+18005550199"  # aftercart.toml [shop] sender
VENDOR = "Juniper & Co"
WAREHOUSE = ("Edison", "New Jersey", "08837")  # where parcels start their trip
CENT = Decimal("0.01")


# ---------------------------------------------------------------------------------------------
# Time. The US rule since 2007 (15 U.S.C. 260a): daylight time from 02:00 local standard time on
# the second Sunday of March to 02:00 local daylight time on the first Sunday of November.
# Arizona (America/Phoenix) keeps standard time all year. Hand-rolled so that the script does
# not depend on the system's tz database; checked against zoneinfo when that is available.

ZONES = {  # zone: (standard offset in hours, observes DST)
    "America/New_York": (-5, True),
    "America/Chicago": (-6, True),
    "America/Denver": (-7, True),
    "America/Phoenix": (-7, False),
    "America/Los_Angeles": (-8, True),
}


def _nth_sunday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def _dst_bounds(zone: str, year: int) -> tuple[datetime, datetime]:
    std, _ = ZONES[zone]
    start = datetime.combine(_nth_sunday(year, 3, 2), time(2)) - timedelta(hours=std)
    end = datetime.combine(_nth_sunday(year, 11, 1), time(2)) - timedelta(hours=std + 1)
    return start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)


def utc_offset(zone: str, instant: datetime) -> int:
    std, observes = ZONES[zone]
    if observes:
        start, end = _dst_bounds(zone, instant.year)
        if start <= instant < end:
            return std + 1
    return std


def local(zone: str, text: str) -> datetime:
    """A wall-clock time in `zone` ("2026-03-08 01:40[:ss]") as a UTC instant."""
    naive = datetime.fromisoformat(text)
    std, _ = ZONES[zone]
    fits = []
    for off in (std, std + 1):
        cand = (naive - timedelta(hours=off)).replace(tzinfo=UTC)
        if utc_offset(zone, cand) == off:
            fits.append(cand)
    if len(fits) != 1:
        raise ValueError(f"{text} does not exist or is ambiguous in {zone}")
    return fits[0]


def iso_z(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_zone(t: datetime, zone: str = SHOP_ZONE) -> str:
    off = utc_offset(zone, t)
    wall = (t + timedelta(hours=off)).replace(tzinfo=None)
    return wall.strftime("%Y-%m-%dT%H:%M:%S") + f"{'-' if off < 0 else '+'}{abs(off):02d}:00"


def wall(t: datetime, zone: str) -> str:
    off = utc_offset(zone, t)
    w = t + timedelta(hours=off)
    abbr = {"America/New_York": "E", "America/Chicago": "C", "America/Denver": "M",
            "America/Phoenix": "M", "America/Los_Angeles": "P"}[zone]
    abbr += "DT" if ZONES[zone][0] != off else "ST"
    return w.strftime("%a %d %H:%M ") + abbr


# ---------------------------------------------------------------------------------------------
# Ids: hashes of labels, so they are stable and unique per stream.

class Ids:
    def __init__(self, namespace: str):
        self.namespace = namespace
        self.seen: dict[int, str] = {}

    def _digest(self, label: str) -> bytes:
        return hashlib.sha256(f"aftercart-examples:{self.namespace}:{label}".encode()).digest()

    def num(self, label: str) -> int:
        """An 18-digit integer (fits i64/u64; Shopify's samples use 18-digit ids)."""
        n = 10**17 + int.from_bytes(self._digest(label), "big") % (9 * 10**17)
        if self.seen.setdefault(n, label) != label:
            raise RuntimeError(f"id collision: {label} / {self.seen[n]}")
        return n

    def small(self, label: str, digits: int) -> int:
        return 10 ** (digits - 1) + int.from_bytes(self._digest(label), "big") % (9 * 10 ** (digits - 1))

    def hex(self, label: str, n: int = 32) -> str:
        return self._digest(label).hex()[:n]

    def uuid(self, label: str) -> str:
        return str(uuid.UUID(bytes=self._digest(label)[:16], version=4))

    def alnum(self, label: str, n: int) -> str:
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        v = int.from_bytes(self._digest(label), "big")
        return "".join(alphabet[(v >> (5 * i)) & 31] for i in range(n))


SHOP_IDS = Ids("shop")  # products and locations are the same in every stream
LOCATION_ID = SHOP_IDS.small("location:edison", 11)


# ---------------------------------------------------------------------------------------------
# Catalogue. REFILL- items are 30-day consumables (replenishment flow); SKIN- items start the
# skin quiz. Two titles carry characters outside GSM-7 or worth escaping ("&", "–").

@dataclass(frozen=True)
class Product:
    sku: str
    title: str
    price: Decimal
    grams: int

    @property
    def product_id(self) -> int:
        return SHOP_IDS.num("product:" + self.sku)

    @property
    def variant_id(self) -> int:
        return SHOP_IDS.num("variant:" + self.sku)


CATALOGUE = {p.sku: p for p in [
    Product("REFILL-CLN-30", "Gentle Cleanser Refill (30-day)", Decimal("18.00"), 310),
    Product("REFILL-SRM-30", "Vitamin C Serum Refill (30-day)", Decimal("32.00"), 120),
    Product("SKIN-MST-50", "Daily Moisturizer 50 ml", Decimal("38.00"), 180),
    Product("SKIN-SPF-50", "Mineral Sunscreen SPF 50", Decimal("29.00"), 150),
    Product("SKIN-RET-30", "Night Retinol Cream", Decimal("54.00"), 160),
    Product("HOME-CNDL-JUN", "Juniper Candle", Decimal("24.00"), 400),
    Product("HOME-DIF-01", "Cedar & Juniper Reed Diffuser 200 ml", Decimal("36.00"), 450),
    Product("BATH-SOAP-3", "Botanical Soap Trio", Decimal("21.00"), 300),
    Product("GIFT-BOX-S", "Gift Box – Small", Decimal("12.00"), 200),
]}

STATE_NAMES = {"CT": "Connecticut", "NY": "New York", "NJ": "New Jersey", "MA": "Massachusetts",
               "FL": "Florida", "AL": "Alabama", "TX": "Texas", "IL": "Illinois", "CO": "Colorado",
               "AZ": "Arizona", "CA": "California", "WA": "Washington"}


def money(d: Decimal) -> str:
    return str(d.quantize(CENT, rounding=ROUND_HALF_UP))


def money_set(d: Decimal) -> dict:
    return {"shop_money": {"amount": money(d), "currency_code": "USD"},
            "presentment_money": {"amount": money(d), "currency_code": "USD"}}


# ---------------------------------------------------------------------------------------------
# The model of a story: customers, orders, checkouts, fulfillments, and the lines they produce.

@dataclass
class Customer:
    key: str
    first: str
    last: str
    email: str
    phone: str  # E.164; area code may differ from the address state on purpose
    province_code: str
    city: str
    zip: str
    address1: str
    zone: str
    tax_rate: Decimal
    accepts_email: bool = True
    id: int = 0
    first_seen: datetime | None = None
    consent: list[tuple[datetime, dict]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def label(self) -> str:
        area = self.phone[2:5]
        return f"{self.name} ({self.province_code}, {area})"

    @property
    def formatted_phone(self) -> str:  # as a buyer types it into the address form
        d = self.phone[2:]
        return f"({d[:3]}) {d[3:6]}-{d[6:]}"

    def consent_at(self, t: datetime) -> dict:
        state = {"state": "not_subscribed", "opt_in_level": None, "consent_updated_at": None,
                 "consent_collected_from": "OTHER"}
        for at, c in self.consent:
            if at <= t:
                state = c
        return dict(state)


@dataclass
class Checkout:
    key: str
    customer: Customer
    created: datetime
    items: list[tuple[str, int]]
    token: str = ""
    cart_token: str = ""
    id: int = 0


@dataclass
class Order:
    key: str
    customer: Customer
    created: datetime
    items: list[tuple[str, int]]
    checkout: Checkout | None = None
    id: int = 0
    number: int = 0  # assigned in time order at render
    fulfillments: list["Fulfillment"] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"#{self.number}"


@dataclass(eq=False)
class Fulfillment:
    order: Order
    created: datetime
    carrier: str
    id: int = 0
    tracking_number: str = ""
    delivered: datetime | None = None  # for estimated_delivery_at on earlier events


@dataclass
class Beat:
    """One step of a story: one or more lines, and one row of the README table."""
    at: datetime
    customer: Customer | None
    what: str
    note: str


@dataclass
class Line:
    at: datetime
    seq: int
    render: Callable[[], dict]
    key: str = ""


@dataclass
class Expect:
    """A message we expect aftercart to send (documentation only; not written to the stream)."""
    sent: datetime | None  # None: not sent (held, dropped, cancelled)
    due: datetime
    customer: Customer
    flow: str
    text: str
    why: str = ""


class Fixtures:
    def __init__(self) -> None:
        self.dir = next((d for d in FIXTURE_DIRS if (d / "orders__create.json").is_file()), None)
        if self.dir is None:
            sys.exit("make_events.py: no Shopify fixtures in " + " or ".join(map(str, FIXTURE_DIRS)))
        self._cache: dict[str, dict] = {}

    def get(self, name: str, fallback: str | None = None) -> dict:
        path = self.dir / f"{name}.json"
        if not path.is_file() and fallback:
            path = self.dir / f"{fallback}.json"
        if path.name not in self._cache:
            self._cache[path.name] = json.loads(path.read_text(encoding="utf-8"))
        return copy.deepcopy(self._cache[path.name])


class Stream:
    def __init__(self, name: str, fixtures: Fixtures, first_order_number: int = 1001):
        self.name = name
        self.fx = fixtures
        self.ids = Ids(name)
        self.first_order_number = first_order_number
        self.lines: list[Line] = []
        self.beats: list[Beat] = []
        self.expects: list[Expect] = []
        self.orders: list[Order] = []
        self.rendered: dict[str, dict] = {}
        self.reply_count = 0
        self.custom_count = 0

    # -- people ----------------------------------------------------------------------------
    def customer(self, key: str, first: str, last: str, email: str, phone: str, province_code: str,
                 city: str, zip_: str, address1: str, zone: str, tax_rate: str, accepts_email: bool = True) -> Customer:
        c = Customer(key, first, last, email, phone, province_code, city, zip_, address1, zone,
                     Decimal(tax_rate), accepts_email)
        c.id = self.ids.num("customer:" + key)
        return c

    def _seen(self, c: Customer, t: datetime) -> None:
        if c.first_seen is None or t < c.first_seen:
            c.first_seen = t

    def _beat(self, at: datetime, c: Customer | None, what: str, note: str) -> None:
        self.beats.append(Beat(at, c, what, note))

    def _line(self, at: datetime, render: Callable[[], dict], key: str = "") -> None:
        self.lines.append(Line(at, len(self.lines), render, key))

    # -- Shopify envelope ------------------------------------------------------------------
    def _webhook(self, topic: str, at: datetime, label: str, body: Callable[[], dict]) -> Callable[[], dict]:
        def render() -> dict:
            return {
                "source": "shopify",
                "topic": topic,
                "received_at": iso_z(at),
                "headers": {
                    "X-Shopify-Topic": topic,
                    "X-Shopify-Event-Id": self.ids.uuid("event:" + label),
                    "X-Shopify-Webhook-Id": self.ids.uuid("webhook:" + label),
                    "X-Shopify-Shop-Domain": SHOP_DOMAIN,
                    "X-Shopify-API-Version": API_VERSION,
                    "X-Shopify-Triggered-At": iso_z(at),
                },
                "body": body(),
            }
        return render

    # -- payload pieces --------------------------------------------------------------------
    def _address(self, c: Customer, template: dict) -> dict:
        a = copy.deepcopy(template)
        a.update({"first_name": c.first, "last_name": c.last, "name": c.name, "address1": c.address1,
                  "address2": None, "company": None, "city": c.city, "zip": c.zip,
                  "province": STATE_NAMES[c.province_code], "province_code": c.province_code,
                  "country": "United States", "country_code": "US", "phone": c.formatted_phone})
        return a

    def _customer_obj(self, c: Customer, template: dict, at: datetime) -> dict:
        cu = copy.deepcopy(template)
        cu.update({"id": c.id, "created_at": iso_zone(c.first_seen or at), "updated_at": iso_zone(at),
                   "first_name": c.first, "last_name": c.last, "state": "disabled", "note": None,
                   "verified_email": True, "email": c.email, "phone": c.phone, "currency": "USD",
                   "admin_graphql_api_id": f"gid://shopify/Customer/{c.id}"})
        da = cu.get("default_address") or {}
        da.update({"id": self.ids.num("address:" + c.key), "customer_id": c.id, "first_name": c.first,
                   "last_name": c.last, "company": None, "address1": c.address1, "address2": None,
                   "city": c.city, "province": STATE_NAMES[c.province_code], "country": "United States",
                   "zip": c.zip, "phone": c.formatted_phone, "name": c.name,
                   "province_code": c.province_code, "country_code": "US",
                   "country_name": "United States", "default": True})
        cu["default_address"] = da
        consent = c.consent_at(at)
        cu["sms_marketing_consent"] = {k: consent[k] for k in
                                       ("state", "opt_in_level", "consent_updated_at", "consent_collected_from")}
        return cu

    def _priced(self, items: list[tuple[str, int]], rate: Decimal):
        rows = []
        for sku, qty in items:
            p = CATALOGUE[sku]
            line_total = p.price * qty
            rows.append((p, qty, line_total, (line_total * rate).quantize(CENT, rounding=ROUND_HALF_UP)))
        subtotal = sum((r[2] for r in rows), Decimal("0"))
        tax = sum((r[3] for r in rows), Decimal("0"))
        grams = sum(r[0].grams * r[1] for r in rows)
        return rows, subtotal, tax, grams

    @staticmethod
    def _shipping(subtotal: Decimal) -> tuple[str, Decimal]:
        return ("Free Shipping", Decimal("0.00")) if subtotal >= 50 else ("Standard Shipping", Decimal("5.95"))

    def _order_body(self, o: Order, at: datetime, fixture: str, fulfilled: bool = False) -> dict:
        c = o.customer
        b = self.fx.get(fixture, fallback="orders__create")
        rows, subtotal, tax, grams = self._priced(o.items, c.tax_rate)
        ship_title, ship_price = self._shipping(subtotal)
        total = subtotal + ship_price + tax
        tax_title = f"{c.province_code} Sales Tax"
        token = self.ids.hex("order-token:" + o.key)
        li_template = b["line_items"][0]
        line_items = []
        for i, (p, qty, line_total, line_tax) in enumerate(rows):
            li = copy.deepcopy(li_template)
            lid = self.ids.num(f"line:{o.key}:{i}")
            li.update({
                "id": lid, "admin_graphql_api_id": f"gid://shopify/LineItem/{lid}", "attributed_staffs": [],
                "current_quantity": qty, "fulfillable_quantity": 0 if fulfilled else qty,
                "fulfillment_service": "manual", "fulfillment_status": "fulfilled" if fulfilled else None,
                "gift_card": False, "grams": p.grams, "name": p.title, "price": money(p.price),
                "price_set": money_set(p.price), "product_exists": True, "product_id": p.product_id,
                "properties": [], "quantity": qty, "requires_shipping": True, "sales_line_item_group_id": None,
                "sku": p.sku, "taxable": True, "title": p.title, "total_discount": "0.00",
                "total_discount_set": money_set(Decimal("0")), "variant_id": p.variant_id,
                "variant_inventory_management": "shopify", "variant_title": None, "vendor": VENDOR,
                "tax_lines": [{"channel_liable": False, "price": money(line_tax), "price_set": money_set(line_tax),
                               "rate": float(c.tax_rate), "title": tax_title}],
                "duties": [], "discount_allocations": [],
            })
            line_items.append(li)
        ship = copy.deepcopy(b["shipping_lines"][0])
        sid = self.ids.num("shipping-line:" + o.key)
        ship.update({"id": sid, "code": ship_title, "title": ship_title, "price": money(ship_price),
                     "price_set": money_set(ship_price), "discounted_price": money(ship_price),
                     "discounted_price_set": money_set(ship_price),
                     "current_discounted_price_set": money_set(ship_price), "tax_lines": [],
                     "discount_allocations": []})
        checkout_token = o.checkout.token if o.checkout else self.ids.hex("checkout-token:" + o.key)
        cart_token = o.checkout.cart_token if o.checkout else self.ids.hex("cart-token:" + o.key)
        zero = Decimal("0")
        b.update({
            "id": o.id, "admin_graphql_api_id": f"gid://shopify/Order/{o.id}",
            "buyer_accepts_marketing": c.accepts_email, "cancel_reason": None, "cancelled_at": None,
            "cart_token": cart_token, "checkout_token": checkout_token, "closed_at": None,
            "confirmation_number": self.ids.alnum("confirmation:" + o.key, 9), "confirmed": True,
            "contact_email": c.email, "created_at": iso_zone(o.created), "processed_at": iso_zone(o.created),
            "updated_at": iso_zone(at), "currency": "USD", "presentment_currency": "USD",
            "current_shipping_price_set": money_set(ship_price),
            "current_subtotal_price": money(subtotal), "current_subtotal_price_set": money_set(subtotal),
            "current_total_discounts": "0.00", "current_total_discounts_set": money_set(zero),
            "current_total_price": money(total), "current_total_price_set": money_set(total),
            "current_total_tax": money(tax), "current_total_tax_set": money_set(tax),
            "discount_codes": [], "discount_applications": [], "email": c.email,
            "financial_status": "paid", "fulfillment_status": "fulfilled" if fulfilled else None,
            "name": o.name, "number": o.number - 1000, "order_number": o.number,
            "order_status_url": f"https://{SHOP_DOMAIN}/{SHOP_ID}/orders/{token}/authenticate"
                                f"?key={self.ids.hex('status-key:' + o.key)}",
            "payment_gateway_names": ["shopify_payments"], "phone": c.phone, "source_name": "web",
            "subtotal_price": money(subtotal), "subtotal_price_set": money_set(subtotal), "tags": "",
            "tax_lines": [{"price": money(tax), "rate": float(c.tax_rate), "title": tax_title,
                           "price_set": money_set(tax), "channel_liable": False}],
            "taxes_included": False, "test": False, "token": token,
            "total_discounts": "0.00", "total_discounts_set": money_set(zero),
            "total_line_items_price": money(subtotal), "total_line_items_price_set": money_set(subtotal),
            "total_outstanding": "0.00", "total_price": money(total), "total_price_set": money_set(total),
            "total_shipping_price_set": money_set(ship_price), "total_tax": money(tax),
            "total_tax_set": money_set(tax), "total_tip_received": "0.00", "total_weight": grams,
            "billing_address": self._address(c, b["billing_address"]),
            "shipping_address": self._address(c, b["shipping_address"]),
            "customer": self._customer_obj(c, b["customer"], at),
            "line_items": line_items, "shipping_lines": [ship], "refunds": [],
            "fulfillments": [self._fulfillment_body(f, at) for f in o.fulfillments if f.created <= at] if fulfilled else [],
        })
        return b

    def _tracking(self, f: Fulfillment) -> tuple[str, str]:
        n = f.tracking_number
        return n, {
            "UPS": f"https://www.ups.com/WebTracking?loc=en_US&requester=ST&trackNums={n}",
            "USPS": f"https://tools.usps.com/go/TrackConfirmAction?tLabels={n}",
            "FedEx": f"https://www.fedex.com/fedextrack/?trknbr={n}",
        }[f.carrier]

    def _fulfillment_body(self, f: Fulfillment, at: datetime) -> dict:
        o, c = f.order, f.order.customer
        b = self.fx.get("fulfillments__create")
        order_body_items = self._order_body(o, f.created, "orders__create")["line_items"]
        li_template = b["line_items"][0]
        items = []
        for oli in order_body_items:
            li = copy.deepcopy(li_template)
            li.update({k: oli[k] for k in ("id", "variant_id", "title", "quantity", "sku", "variant_title", "vendor",
                                           "fulfillment_service", "product_id", "requires_shipping", "taxable",
                                           "gift_card", "name", "variant_inventory_management", "properties",
                                           "product_exists", "grams", "price", "total_discount", "price_set",
                                           "total_discount_set", "discount_allocations", "duties",
                                           "admin_graphql_api_id", "tax_lines")})
            li.update({"fulfillable_quantity": 0, "fulfillment_status": "fulfilled"})
            items.append(li)
        number, url = self._tracking(f)
        index = o.fulfillments.index(f) + 1
        b.update({
            "id": f.id, "order_id": o.id, "status": "success", "created_at": iso_zone(f.created),
            "updated_at": iso_zone(f.created), "service": "manual", "tracking_company": f.carrier,
            "shipment_status": None, "location_id": LOCATION_ID, "origin_address": None, "email": c.email,
            "destination": self._address(c, b["destination"]), "line_items": items,
            "tracking_number": number, "tracking_numbers": [number], "tracking_url": url, "tracking_urls": [url],
            "receipt": {}, "name": f"{o.name}.{index}", "admin_graphql_api_id": f"gid://shopify/Fulfillment/{f.id}",
        })
        return b

    # -- story steps -----------------------------------------------------------------------
    def consent(self, c: Customer, at: datetime, state: str, collected_from: str = "SHOPIFY",
                note: str = "", beat: bool = True) -> None:
        self._seen(c, at)
        record = {"state": state, "opt_in_level": "single_opt_in", "consent_updated_at": iso_zone(at),
                  "consent_collected_from": collected_from}
        c.consent.append((at, record))
        c.consent.sort(key=lambda r: r[0])
        label = f"consent:{c.key}:{iso_z(at)}"

        def body() -> dict:
            b = self.fx.get("customers_marketing_consent__update")
            b.update({"id": c.id, "phone": c.phone})
            b["sms_marketing_consent"] = dict(record)
            return b
        self._line(at, self._webhook("customers_marketing_consent/update", at, label, body), key=label)
        if beat:
            self._beat(at, c, f"customers_marketing_consent/update: {state}", note)

    def checkout(self, key: str, c: Customer, at: datetime, items: list[tuple[str, int]], note: str) -> Checkout:
        self._seen(c, at)
        ch = Checkout(key, c, at, items)
        ch.id = self.ids.num("checkout:" + key)
        ch.token = self.ids.hex("checkout-token:" + key)
        ch.cart_token = self.ids.hex("cart-token:" + key)
        label = "checkout:" + key

        def body() -> dict:
            b = self.fx.get("checkouts__create")
            rows, subtotal, tax, grams = self._priced(items, c.tax_rate)
            tmpl = b["line_items"][0]
            lis = []
            for p, qty, line_total, line_tax in rows:
                li = copy.deepcopy(tmpl)
                tl = li["tax_lines"][0]
                tl.update({"price": money(line_tax), "rate": float(c.tax_rate), "title": f"{c.province_code} Sales Tax",
                           "tax_calculation_price": money(line_tax), "compare_at": float(c.tax_rate)})
                li.update({"key": self.ids.hex(f"checkout-line:{key}:{p.sku}"), "product_id": p.product_id,
                           "variant_id": p.variant_id, "sku": p.sku, "title": p.title, "presentment_title": p.title,
                           "variant_title": None, "presentment_variant_title": None, "vendor": VENDOR,
                           "grams": p.grams, "quantity": qty, "price": money(p.price), "variant_price": money(p.price),
                           "line_price": money(line_total), "tax_lines": [tl]})
                lis.append(li)
            b.update({
                "token": ch.token, "cart_token": ch.cart_token, "email": c.email,
                "buyer_accepts_marketing": c.accepts_email, "created_at": iso_zone(at), "updated_at": iso_zone(at),
                "total_weight": grams, "currency": "USD", "phone": c.phone, "customer_locale": "en-US",
                "line_items": lis, "name": f"#{ch.id}",
                "abandoned_checkout_url": f"https://{SHOP_DOMAIN}/{SHOP_ID}/checkouts/{ch.token}/recover"
                                          f"?key={self.ids.hex('recover-key:' + key)}",
                "tax_lines": [{"price": money(tax), "rate": float(c.tax_rate), "title": f"{c.province_code} Sales Tax",
                               "channel_liable": False}],
                "presentment_currency": "USD", "buyer_accepts_sms_marketing": True, "sms_marketing_phone": c.phone,
                "total_discounts": "0.00", "total_line_items_price": money(subtotal), "total_price": money(subtotal + tax),
                "total_tax": money(tax), "subtotal_price": money(subtotal),
                "billing_address": self._address(c, b["billing_address"]),
                "shipping_address": self._address(c, b["shipping_address"]),
                "customer": self._customer_obj(c, b["customer"], at),
            })
            return b
        self._line(at, self._webhook("checkouts/create", at, label, body), key=label)
        self._beat(at, c, "checkouts/create (buyer_accepts_sms_marketing: true)", note)
        return ch

    def order(self, key: str, c: Customer, at: datetime, items: list[tuple[str, int]], note: str,
              checkout: Checkout | None = None) -> Order:
        self._seen(c, at)
        o = Order(key, c, at, items, checkout)
        o.id = self.ids.num("order:" + key)
        self.orders.append(o)
        paid_at = at + timedelta(seconds=2)
        self._line(at, self._webhook("orders/create", at, f"order:{key}:create",
                                     lambda: self._order_body(o, at, "orders__create")), key=f"order:{key}:create")
        self._line(paid_at, self._webhook("orders/paid", paid_at, f"order:{key}:paid",
                                          lambda: self._order_body(o, paid_at, "orders__paid")))
        skus = ", ".join(f"{s}×{q}" if q > 1 else s for s, q in items)
        self._beat(at, c, f"orders/create {{{key}}} ({skus}) + orders/paid", note)
        return o

    def fulfill(self, o: Order, at: datetime, carrier: str, note: str = "") -> Fulfillment:
        f = Fulfillment(o, at, carrier)
        f.id = self.ids.num(f"fulfillment:{o.key}:{len(o.fulfillments)}")
        f.tracking_number = {
            "UPS": lambda: "1Z" + self.ids.alnum("ups:" + o.key, 6) + "03" + str(self.ids.small("ups#" + o.key, 10)),
            "USPS": lambda: "9400" + str(self.ids.small("usps:" + o.key, 18)),
            "FedEx": lambda: str(self.ids.small("fedex:" + o.key, 12)),
        }[carrier]()
        o.fulfillments.append(f)
        fulfilled_at = at + timedelta(seconds=1)
        self._line(at, self._webhook("fulfillments/create", at, f"fulfillment:{o.key}",
                                     lambda: self._fulfillment_body(f, at)))
        self._line(fulfilled_at, self._webhook("orders/fulfilled", fulfilled_at, f"order:{o.key}:fulfilled",
                                               lambda: self._order_body(o, fulfilled_at, "orders__fulfilled", True)))
        self._beat(at, o.customer, f"fulfillments/create {{{o.key}}} ({carrier}) + orders/fulfilled",
                   note or "`checkin_cross_sell` starts, waiting for `shipment.delivered`.")
        return f

    def shipment(self, f: Fulfillment, at: datetime, status: str, note: str = "") -> None:
        o, c = f.order, f.order.customer
        if status == "delivered":
            f.delivered = at
        # The fixtures' own wording for in_transit and delivered; the others are ours.
        messages = {"in_transit": "Item is now in transit", "out_for_delivery": "Out for delivery",
                    "delivered": "Item has been delivered", "carrier_picked_up": "Picked up by the carrier"}
        label = f"shipment:{o.key}:{status}"
        eid = self.ids.num("fulfillment-event:" + label)

        def body() -> dict:
            b = self.fx.get(f"fulfillment_events__create.{status}", fallback="fulfillment_events__create")
            at_customer = status in ("delivered", "out_for_delivery")
            city, province, zip_ = (c.city, STATE_NAMES[c.province_code], c.zip) if at_customer else WAREHOUSE
            b.update({
                "id": eid, "fulfillment_id": f.id, "status": status, "message": messages[status],
                "happened_at": iso_zone(at), "city": city, "province": province, "country": "US", "zip": zip_,
                "address1": None, "latitude": None, "longitude": None, "shop_id": SHOP_ID,
                "created_at": iso_zone(at), "updated_at": iso_zone(at),
                "estimated_delivery_at": iso_zone(f.delivered) if f.delivered and status != "delivered" else None,
                "order_id": o.id, "admin_graphql_api_id": f"gid://shopify/FulfillmentEvent/{eid}",
            })
            return b
        self._line(at, self._webhook("fulfillment_events/create", at, label, body), key=label)
        self._beat(at, c, f"fulfillment_events/create `{status}` {{{o.key}}}", note)

    def reply(self, c: Customer, at: datetime, text: str, note: str) -> None:
        label = f"reply:{c.key}:{iso_z(at)}"

        def render() -> dict:
            return {"source": "aftercart", "type": "sms.replied", "at": iso_z(at), "id": "",
                    "data": {"from": c.phone, "to": SENDER, "body": text, "message_sid": "SM" + self.ids.hex(label)}}
        self._line(at, render, key=label)
        self._beat(at, c, f"sms.replied {json.dumps(text, ensure_ascii=False)}", note)

    def review_submitted(self, o: Order, at: datetime, rating: int, note: str) -> None:
        def render() -> dict:
            return {"source": "aftercart", "type": "review_submitted", "at": iso_z(at), "id": "",
                    "data": {"order_id": str(o.id), "customer_id": str(o.customer.id), "rating": rating}}
        self._line(at, render)
        self._beat(at, o.customer, f"review_submitted {{{o.key}}} rating {rating}", note)

    def redeliver(self, key: str, at: datetime, c: Customer, note: str) -> None:
        """Shopify retries with the original payload and headers (same X-Shopify-Event-Id,
        X-Shopify-Webhook-Id and X-Shopify-Triggered-At); only our received_at differs."""
        def render() -> dict:
            line = copy.deepcopy(self.rendered[key])
            line["received_at"] = iso_z(at)
            return line
        self.lines.append(Line(at, len(self.lines), render, key="redelivery:" + key))
        topic = key.split(":")[-1]
        self._beat(at, c, f"orders/{topic} {{{key.split(':')[1]}}} again (re-delivery)", note)

    def expect(self, c: Customer, flow: str, due: datetime, text: str, sent: datetime | None | str = "due",
               why: str = "") -> None:
        self.expects.append(Expect(due if sent == "due" else sent, due, c, flow, text, why))

    # -- output ----------------------------------------------------------------------------
    def order_names(self) -> dict[str, str]:
        return {o.key: o.name for o in self.orders}

    def render(self) -> list[dict]:
        for n, o in enumerate(sorted(self.orders, key=lambda o: o.created)):
            o.number = self.first_order_number + n
        ordered = sorted(self.lines, key=lambda line: (line.at, line.seq))
        out = []
        for line in ordered:  # originals first so that re-deliveries can copy them
            if not line.key.startswith("redelivery:"):
                self.rendered[line.key or f"#{line.seq}"] = line.render()
        replies = customs = 0
        for line in ordered:
            obj = line.render() if line.key.startswith("redelivery:") else self.rendered[line.key or f"#{line.seq}"]
            if obj["source"] == "aftercart":
                if obj["type"] == "sms.replied":
                    replies += 1
                    obj["id"] = f"reply-{replies:04d}"
                else:
                    customs += 1
                    obj["id"] = f"{obj['type'].replace('_', '-')}-{customs:04d}"
            out.append(obj)
        return out


# ---------------------------------------------------------------------------------------------
# The week: Monday 2026-03-02 00:00Z to Monday 2026-03-09 00:00Z. US daylight time starts on
# Sunday 2026-03-08 at 02:00 local (07:00Z in New York, 10:00Z in Los Angeles).

def build_week(fx: Fixtures) -> Stream:
    s = Stream("week", fx)
    ET, CT, MT, AZ, PT = ("America/New_York", "America/Chicago", "America/Denver",
                          "America/Phoenix", "America/Los_Angeles")
    cu = s.customer
    maya = cu("maya", "Maya", "Thompson", "maya.thompson@example.com", "+12035550123", "CT", "New Haven",
              "06511", "48 Orange St", ET, "0.0635")
    daniel = cu("daniel", "Daniel", "Ortiz", "daniel.ortiz@example.com", "+12125550147", "NY", "Brooklyn",
                "11215", "312 7th Ave Apt 3R", ET, "0.08875")
    priya = cu("priya", "Priya", "Raman", "priya.raman@example.com", "+14155550162", "CA", "San Francisco",
               "94110", "2290 Harrison St", PT, "0.08625")
    marcus = cu("marcus", "Marcus", "Bell", "marcus.bell@example.com", "+15125550188", "TX", "Austin",
                "78704", "1805 S 1st St", CT, "0.0825")
    grace = cu("grace", "Grace", "Kim", "grace.kim@example.com", "+13055550114", "FL", "Miami", "33131",
               "901 Brickell Key Blvd Unit 1204", ET, "0.07")
    james = cu("james", "James", "Whitfield", "james.whitfield@example.com", "+12055550171", "AL",
               "Birmingham", "35203", "2117 3rd Ave N", CT, "0.10", accepts_email=False)
    sofia = cu("sofia", "Sofia", "Alvarez", "sofia.alvarez@example.com", "+16025550139", "AZ", "Phoenix",
               "85004", "455 N 3rd St Apt 2110", AZ, "0.086")
    ethan = cu("ethan", "Ethan", "Brooks", "ethan.brooks@example.com", "+12065550156", "WA", "Seattle",
               "98103", "3612 Fremont Ave N", PT, "0.1035")
    olivia = cu("olivia", "Olivia", "Chen", "olivia.chen@example.com", "+13125550193", "IL", "Chicago",
                "60614", "2044 N Halsted St", CT, "0.1025")
    noah = cu("noah", "Noah", "Patel", "noah.patel@example.com", "+12035550176", "NY", "White Plains",
              "10601", "17 Church St", ET, "0.08375")
    ava = cu("ava", "Ava", "Johnson", "ava.johnson@example.com", "+16175550128", "MA", "Boston", "02118",
             "61 Union Park", ET, "0.0625")
    liam = cu("liam", "Liam", "O'Connor", "liam.oconnor@example.com", "+13035550105", "CO", "Denver",
              "80205", "2630 Welton St", MT, "0.0881")
    zoe = cu("zoe", "Zoë", "Laurent", "zoe.laurent@example.com", "+12015550181", "NJ", "Hoboken", "07030",
             "720 Bloomfield St", ET, "0.06625")
    ruby = cu("ruby", "Ruby", "Carter", "ruby.carter@example.com", "+12515550134", "AL", "Mobile", "36602",
              "110 Dauphin St", CT, "0.10")

    L = local
    sub = "subscribed"

    # ---- Monday 2 March ----------------------------------------------------------------
    s.consent(grace, L(ET, "2026-03-02 09:19"), sub, note="SMS box ticked at checkout.")
    grace1 = s.order("grace1", grace, L(ET, "2026-03-02 09:20"), [("SKIN-SPF-50", 1), ("SKIN-RET-30", 1)],
                     "First order. `order_confirmation` now; `order_upsell` 11:20; `skin_quiz` Thu 18:00; "
                     "`welcome_discount_test` Fri 10:00; `win_back` (75 d).")
    s.consent(maya, L(ET, "2026-03-02 10:14"), sub, note="SMS box ticked at checkout.")
    maya1 = s.order("maya1", maya, L(ET, "2026-03-02 10:15"), [("SKIN-MST-50", 1), ("BATH-SOAP-3", 1)],
                    "First order. Confirmation now; upsell 12:15; quiz Thu 18:00; welcome waits to Mon 9 10:00 "
                    "(Fri 10:15 is past 10:00).")
    s.consent(zoe, L(ET, "2026-03-02 10:59"), sub, note="SMS box ticked at checkout.")
    zoe1 = s.order("zoe1", zoe, L(ET, "2026-03-02 11:00"), [("SKIN-RET-30", 1)],
                   "First order; \"Zoë\" is not GSM-7, so every message with her name is UCS-2. Upsell 13:00; "
                   "quiz Thu 18:00.")
    s.consent(daniel, L(ET, "2026-03-02 13:39"), sub, note="SMS box ticked at checkout.")
    daniel1 = s.order("daniel1", daniel, L(ET, "2026-03-02 13:40"), [("HOME-CNDL-JUN", 2)],
                      "First order. Confirmation now; upsell 15:40; welcome pending (would be Mon 9 10:00).")
    grace_f = s.fulfill(grace1, L(ET, "2026-03-02 15:00"), "UPS")
    zoe_f = s.fulfill(zoe1, L(ET, "2026-03-02 15:30"), "USPS")
    s.consent(liam, L(MT, "2026-03-02 15:59"), sub, note="SMS box ticked at checkout.")
    liam1 = s.order("liam1", liam, L(MT, "2026-03-02 16:00"), [("REFILL-CLN-30", 1), ("REFILL-SRM-30", 1)],
                    "First order, refills: `replenishment` (25 d), upsell due 18:00, welcome pending. "
                    "\"O'Connor\" has an apostrophe.")
    liam2 = s.order("liam2", liam, L(MT, "2026-03-02 16:45"), [("BATH-SOAP-3", 1)],
                    "Forgot the soap, 45 min later. Exits `order_upsell` (no upsell at all), `replenishment` "
                    "(the refill reminder is gone for good: this order has no refill), `welcome_discount_test` "
                    "and `win_back` of {liam1}; a new `win_back` starts. Not first-time: no upsell, no welcome.")
    s.shipment(zoe_f, L(ET, "2026-03-02 19:10"), "in_transit", "`shipping_update` now (transactional).")
    s.consent(ethan, L(PT, "2026-03-02 21:29"), sub, note="SMS box ticked at checkout.")
    ethan1 = s.order("ethan1", ethan, L(PT, "2026-03-02 21:30"), [("HOME-DIF-01", 1)],
                     "Late order (WA 08:00-20:00). Confirmation now (transactional). Upsell due 23:30 PST: "
                     "quiet hours, deferred to Tue 08:00 PST. Its title \"Cedar & Juniper Reed Diffuser 200 ml\" is cut by `truncate(30)`.")

    # ---- Tuesday 3 March -----------------------------------------------------------------
    liam1_f = s.fulfill(liam1, L(ET, "2026-03-03 09:30"), "USPS")
    liam2_f = s.fulfill(liam2, L(ET, "2026-03-03 09:32"), "USPS")
    mch = s.checkout("marcus-checkout", marcus, L(CT, "2026-03-03 10:00"), [("REFILL-SRM-30", 1), ("SKIN-SPF-50", 1)],
                     "`abandoned_checkout` starts: reminder due 11:00 CST.")
    s.consent(marcus, L(CT, "2026-03-03 10:00:04"), sub, "SHOPIFY", note="Consent from the checkout box.")
    daniel1_f = s.fulfill(daniel1, L(ET, "2026-03-03 10:05"), "USPS")
    maya_f = s.fulfill(maya1, L(ET, "2026-03-03 11:00"), "UPS")
    marcus1 = s.order("marcus1", marcus, L(CT, "2026-03-03 11:25"), [("REFILL-SRM-30", 1), ("SKIN-SPF-50", 1)],
                      "Recovered checkout (same checkout_token). Exits `abandoned_checkout` (no 2nd reminder); "
                      "goal: conversion for the 11:00 reminder. First order: confirmation, upsell 13:25, quiz Fri "
                      "18:00 CST, `replenishment`, welcome.", checkout=mch)
    s.shipment(grace_f, L(ET, "2026-03-03 12:00"), "in_transit", "Shipping update now.")
    s.consent(olivia, L(CT, "2026-03-03 12:04"), sub, note="SMS box ticked at checkout.")
    olivia1 = s.order("olivia1", olivia, L(CT, "2026-03-03 12:05"),
                      [("SKIN-MST-50", 1), ("SKIN-RET-30", 1), ("REFILL-SRM-30", 1)],
                      "First order, skincare and a refill. Upsell 14:05; quiz Fri 18:00 CST; `replenishment`.")
    s.shipment(zoe_f, L(ET, "2026-03-03 14:20"), "delivered",
               "`review_request` starts (due Thu 14:20, then next weekday 10:00 = Fri 10:00); "
               "`checkin_cross_sell` gets its delivery (6 d wait).")
    s.shipment(maya_f, L(ET, "2026-03-03 16:30"), "in_transit", "Shipping update now.")
    s.shipment(daniel1_f, L(ET, "2026-03-03 17:45"), "in_transit", "Shipping update now.")
    s.shipment(liam1_f, L(MT, "2026-03-03 18:00"), "in_transit", "Shipping update for {liam1}.")
    s.shipment(liam2_f, L(MT, "2026-03-03 18:02"), "in_transit", "A second shipping update 2 min later ({liam2}).")
    james1 = s.order("james1", james, L(CT, "2026-03-03 19:45"), [("HOME-DIF-01", 1), ("GIFT-BOX-S", 1)],
                     "Never subscribed (`not_subscribed`, no consent webhook). Confirmation only (transactional); "
                     "no upsell, no welcome, no quiz.")

    # ---- Wednesday 4 March -----------------------------------------------------------------
    s.consent(sofia, L(AZ, "2026-03-04 08:29"), sub, note="SMS box ticked at checkout.")
    sofia1 = s.order("sofia1", sofia, L(AZ, "2026-03-04 08:30"), [("REFILL-CLN-30", 2)],
                     "Arizona: no daylight time, MST all week. Upsell 10:30 MST; `replenishment` due "
                     "Sun 29 Mar 10:00 MST (17:00Z).")
    s.shipment(grace_f, L(ET, "2026-03-04 08:40"), "delivered",
               "`review_request` starts: due Fri 08:40, then 10:00.")
    marcus_f = s.fulfill(marcus1, L(ET, "2026-03-04 09:00"), "UPS")
    ethan_f = s.fulfill(ethan1, L(ET, "2026-03-04 10:00"), "UPS")
    olivia_f = s.fulfill(olivia1, L(ET, "2026-03-04 11:30"), "UPS")
    james_f = s.fulfill(james1, L(ET, "2026-03-04 14:00"), "FedEx")
    s.shipment(marcus_f, L(CT, "2026-03-04 15:00"), "in_transit", "Shipping update now.")
    s.shipment(olivia_f, L(CT, "2026-03-04 16:00"), "in_transit", "Shipping update now.")
    s.consent(noah, L(ET, "2026-03-04 18:19"), sub, note="SMS box ticked at checkout.")
    noah1 = s.order("noah1", noah, L(ET, "2026-03-04 18:20"), [("GIFT-BOX-S", 1), ("HOME-CNDL-JUN", 1)],
                    "Connecticut number (203), New York address. Upsell due 20:20: allowed in NY (08-21) but "
                    "Connecticut's 09-20 applies to a CT area code, so held to Thu 09:00. First title "
                    "\"Gift Box – Small\" has an en dash (UCS-2 unless smart-encoded).")

    # ---- Thursday 5 March ------------------------------------------------------------------
    s.shipment(maya_f, L(ET, "2026-03-05 08:10"), "out_for_delivery", "No flow reacts (`shipment.out_for_delivery`).")
    sofia_f = s.fulfill(sofia1, L(ET, "2026-03-05 09:00"), "USPS")
    s.consent(ethan, L(PT, "2026-03-05 09:12"), "unsubscribed", "OTHER",
              note="Unsubscribed outside aftercart. From now on: no marketing (welcome, review, check-in "
                   "suppressed); transactional messages still go.")
    s.shipment(james_f, L(CT, "2026-03-05 09:30"), "in_transit", "Shipping update now (transactional, no consent needed).")
    noah_f = s.fulfill(noah1, L(ET, "2026-03-05 11:00"), "UPS")
    s.shipment(ethan_f, L(PT, "2026-03-05 11:00"), "in_transit", "Shipping update now, despite the unsubscribe.")
    s.shipment(daniel1_f, L(ET, "2026-03-05 12:30"), "delivered", "`review_request` starts (due Sat, then Mon 10:00).")
    s.shipment(sofia_f, L(MT, "2026-03-05 14:00"), "in_transit", "Shipping update now (14:00 MST).")
    s.shipment(liam1_f, L(MT, "2026-03-05 15:10"), "delivered", "`review_request` for {liam1}.")
    s.shipment(liam2_f, L(MT, "2026-03-05 15:11"), "delivered",
               "A second `review_request` ({liam2}): two review asks on Mon 9 10:00 MDT.")
    s.reply(grace, L(ET, "2026-03-05 18:03"), " Two ",
            "Answer to the 18:00 quiz; trimmed and case-folded it is \"two\": the clarity routine.")
    s.reply(maya, L(ET, "2026-03-05 18:12"), "1", "Answer to the 18:00 quiz: the hydration routine.")
    s.shipment(maya_f, L(ET, "2026-03-05 19:30"), "delivered",
               "Connecticut, 19:30 local. Nothing is sent now; `review_request` due Sat 19:30, then Mon 9 10:00.")
    daniel2 = s.order("daniel2", daniel, L(ET, "2026-03-05 20:05"), [("HOME-CNDL-JUN", 1), ("BATH-SOAP-3", 1)],
                      "Repeat order (same customer id). Exits `win_back`, `welcome_discount_test` (never sent), "
                      "`review_request` and `checkin_cross_sell` of {daniel1}; new `win_back`. Conversion for Mon's "
                      "upsell (5 d goal). Not first-time: no upsell, no welcome.")
    s.shipment(noah_f, L(ET, "2026-03-05 20:40"), "in_transit",
               "20:40 for a CT number: the shipping update is transactional, so it goes now (docs: quiet hours "
               "bind marketing only).")

    # ---- Friday 6 March --------------------------------------------------------------------
    daniel2_f = s.fulfill(daniel2, L(ET, "2026-03-06 10:20"), "USPS")
    s.review_submitted(zoe1, L(ET, "2026-03-06 10:40"), 5, "Goal of `review_request`: conversion for the 10:00 ask.")
    s.shipment(olivia_f, L(CT, "2026-03-06 11:00"), "delivered",
               "`review_request` (Mon 9 10:00 CDT). Check-in: 6 d from 11:00 CST crosses the DST change.")
    s.shipment(marcus_f, L(CT, "2026-03-06 14:00"), "delivered", "`review_request` starts (due Mon 9 10:00).")
    s.shipment(daniel2_f, L(ET, "2026-03-06 18:05"), "in_transit", "Shipping update now.")
    s.reply(marcus, L(CT, "2026-03-06 18:09"), "STOP",
            "In the middle of `skin_quiz` (waiting for a reply): an opt-out, not an answer. No \"Sorry\" "
            "message; every pending instance is cancelled (quiz, welcome, review, check-in, replenishment).")
    s.reply(olivia, L(CT, "2026-03-06 18:20"), "maybe?", "Quiz answer matches nothing: the `other` branch.")
    s.reply(olivia, L(CT, "2026-03-06 18:24"), "2",
            "She answers as asked, but `skin_quiz` ended after `other`: no flow waits, nothing is sent.")

    # ---- Saturday 7 March ------------------------------------------------------------------
    s.reply(marcus, L(CT, "2026-03-07 10:30"), "START", "Opt back in. Cancelled instances stay cancelled.")
    s.checkout("priya-checkout", priya, L(PT, "2026-03-07 12:10"), [("SKIN-MST-50", 1), ("HOME-CNDL-JUN", 1)],
               "Abandoned: no order follows. Reminder due 13:10 PST, second 23 h later.")
    s.consent(priya, L(PT, "2026-03-07 12:10:05"), sub, "SHOPIFY", note="Consent from the checkout box.")
    s.shipment(james_f, L(CT, "2026-03-07 12:15"), "delivered", "Not subscribed: no review request, no check-in.")
    s.reply(james, L(CT, "2026-03-07 12:40"), "HELP", "Help reply from aftercart.toml, even though he never subscribed.")
    s.shipment(sofia_f, L(MT, "2026-03-07 13:00"), "delivered", "`review_request` (Tue 10 10:00 MST).")
    s.reply(priya, L(PT, "2026-03-07 13:32"), "stopwatch",
            "Not STOP (a keyword must be the whole reply). No flow waits for a reply: no answer; she stays "
            "subscribed and still gets the second reminder.")
    s.shipment(ethan_f, L(PT, "2026-03-07 15:40"), "delivered", "Unsubscribed: review and check-in must not send.")
    s.shipment(noah_f, L(ET, "2026-03-07 19:30"), "delivered", "`review_request` (Tue 10 10:00 EDT).")

    # ---- Sunday 8 March (DST starts at 02:00 local) ------------------------------------------
    s.consent(ava, L(ET, "2026-03-08 01:39"), sub, note="SMS box ticked at checkout (01:39 EST).")
    s.order("ava1", ava, L(ET, "2026-03-08 01:40"), [("BATH-SOAP-3", 1), ("GIFT-BOX-S", 1)],
            "01:40 EST, 20 min before clocks jump to 03:00 EDT. Confirmation now (transactional). Upsell due "
            "08:40Z = 04:40 EDT: held to 08:00 EDT = 12:00Z (not 13:00Z).")
    s.redeliver("order:ava1:create", L(ET, "2026-03-08 03:41"), ava,
                "Same X-Shopify-Event-Id, received 61 min later (03:41 EDT); body still says -05:00. Must be "
                "ignored: no second confirmation, no second upsell.")
    s.consent(ruby, L(CT, "2026-03-08 13:14"), sub, note="SMS box ticked at checkout.")
    s.order("ruby1", ruby, L(CT, "2026-03-08 13:15"), [("HOME-CNDL-JUN", 1)],
            "Alabama, Sunday: confirmation now (transactional); upsell due 15:15 CDT is held: Alabama allows no "
            "Sunday marketing. Sent Mon 9 08:00 CDT. Payload offsets are -04:00 now.")

    # ---- Expected outbound messages inside the week ------------------------------------------
    x = s.expect
    for o in (grace1, maya1, zoe1, daniel1, liam1, liam2, ethan1, marcus1, olivia1, james1, sofia1, noah1,
              daniel2):
        x(o.customer, "order_confirmation", o.created, f"confirmation {{{o.key}}}")
    x(ava, "order_confirmation", L(ET, "2026-03-08 01:40"), "confirmation {ava1}", why="transactional, 01:40 EST")
    x(ruby, "order_confirmation", L(CT, "2026-03-08 13:15"), "confirmation {ruby1}")
    for f, t in ((zoe_f, L(ET, "2026-03-02 19:10")), (grace_f, L(ET, "2026-03-03 12:00")),
                 (maya_f, L(ET, "2026-03-03 16:30")), (daniel1_f, L(ET, "2026-03-03 17:45")),
                 (liam1_f, L(MT, "2026-03-03 18:00")), (liam2_f, L(MT, "2026-03-03 18:02")),
                 (marcus_f, L(CT, "2026-03-04 15:00")), (olivia_f, L(CT, "2026-03-04 16:00")),
                 (james_f, L(CT, "2026-03-05 09:30")), (ethan_f, L(PT, "2026-03-05 11:00")),
                 (sofia_f, L(MT, "2026-03-05 14:00")), (noah_f, L(ET, "2026-03-05 20:40")),
                 (daniel2_f, L(ET, "2026-03-06 18:05"))):
        why = {noah_f: "transactional: not held at 20:40 for a CT number",
               ethan_f: "transactional: sent although unsubscribed"}.get(f, "")
        x(f.order.customer, "shipping_update", t, f"on its way {{{f.order.key}}} ({f.carrier})", why=why)
    x(grace, "order_upsell", L(ET, "2026-03-02 11:20"), "bestsellers (Mineral Sunscreen SPF 50)")
    x(maya, "order_upsell", L(ET, "2026-03-02 12:15"), "bestsellers (Daily Moisturizer 50 ml)")
    x(zoe, "order_upsell", L(ET, "2026-03-02 13:00"), "bestsellers (Night Retinol Cream)")
    x(daniel, "order_upsell", L(ET, "2026-03-02 15:40"), "bestsellers (Juniper Candle)")
    x(liam, "order_upsell", L(MT, "2026-03-02 18:00"), "bestsellers", sent=None,
      why="exited: {liam2} at 16:45")
    x(ethan, "order_upsell", L(PT, "2026-03-02 23:30"), "bestsellers (truncate(30) of Cedar & Juniper Reed Diffuser 200 ml)",
      sent=L(PT, "2026-03-03 08:00"), why="quiet hours (WA 08-20), deferred")
    x(marcus, "abandoned_checkout", L(CT, "2026-03-03 11:00"), "you left something in your cart (1st)")
    x(marcus, "abandoned_checkout", L(CT, "2026-03-04 10:00"), "cart saved one more day (2nd)", sent=None,
      why="exited: {marcus1} at 11:25")
    x(marcus, "order_upsell", L(CT, "2026-03-03 13:25"), "bestsellers (truncate(30) of Vitamin C Serum Refill (30-day))")
    x(olivia, "order_upsell", L(CT, "2026-03-03 14:05"), "bestsellers (Daily Moisturizer 50 ml)")
    x(james, "order_upsell", L(CT, "2026-03-03 21:45"), "bestsellers", sent=None,
      why="not subscribed (entry or send refused)")
    x(sofia, "order_upsell", L(AZ, "2026-03-04 10:30"), "bestsellers (truncate(30) of Gentle Cleanser Refill (30-day))")
    x(noah, "order_upsell", L(ET, "2026-03-04 20:20"), "bestsellers (Gift Box – Small)",
      sent=L(ET, "2026-03-05 09:00"), why="CT area code: Connecticut 09-20 is stricter than NY")
    for c in (maya, grace, zoe):
        x(c, "skin_quiz", L(ET, "2026-03-05 18:00"), "what is your skin goal? Reply 1, 2, 3")
    x(grace, "skin_quiz", L(ET, "2026-03-05 18:03"), "Clarity it is")
    x(maya, "skin_quiz", L(ET, "2026-03-05 18:12"), "Hydration it is")
    x(grace, "welcome_discount_test", L(ET, "2026-03-06 10:00"), "thanks for your first order (arm by hash)",
      why="3rd marketing message in 24 h (quiz, answer, this)")
    x(grace, "review_request", L(ET, "2026-03-06 10:00"), "Hi Grace! How is your order…",
      sent=L(ET, "2026-03-06 18:00"),
      why="4th in 24 h: frequency cap 3/24 h holds it until the Thu 18:00 quiz ages out (≈18:00) (order of the two 10:00 "
          "sends is the engine's tie-break)")
    x(zoe, "review_request", L(ET, "2026-03-06 10:00"), "Hi Zoë! How is your order… (UCS-2)",
      why="first-time branch; goal met 10:40")
    x(marcus, "skin_quiz", L(CT, "2026-03-06 18:00"), "what is your skin goal?")
    x(olivia, "skin_quiz", L(CT, "2026-03-06 18:00"), "what is your skin goal?")
    x(marcus, "(keyword)", L(CT, "2026-03-06 18:09"), "opt-out confirmation (one, if configured)",
      why="STOP; nothing else to Marcus until START")
    x(olivia, "skin_quiz", L(CT, "2026-03-06 18:20"), "Sorry, we did not get that. Reply 1, 2 or 3.")
    x(marcus, "(keyword)", L(CT, "2026-03-07 10:30"), "opt-in confirmation", why="START")
    x(james, "(keyword)", L(CT, "2026-03-07 12:40"), "help_reply from aftercart.toml", why="HELP")
    x(priya, "abandoned_checkout", L(PT, "2026-03-07 13:10"), "you left something in your cart (1st)")
    x(zoe, "skin_quiz", L(ET, "2026-03-07 18:00"), "(none)", sent=None, why="no reply in 2 d: timeout, exit")
    x(ava, "order_upsell", L(ET, "2026-03-08 04:40"), "bestsellers (Botanical Soap Trio)",
      sent=L(ET, "2026-03-08 08:00"), why="quiet hours (MA 08-20), across the DST change")
    x(priya, "abandoned_checkout", L(PT, "2026-03-08 13:10"), "cart saved one more day (2nd)",
      why="23 h after 13:10 PST is 13:10 PDT (12:10 PDT if a wait were wall-clock)")
    x(ruby, "order_upsell", L(CT, "2026-03-08 15:15"), "bestsellers (Juniper Candle)",
      sent=L(CT, "2026-03-09 08:00"), why="Alabama: no marketing on Sundays; lands after the stream ends")
    return s


# ---------------------------------------------------------------------------------------------
# The tour: three customers, fifteen lines.

def build_tiny(fx: Fixtures) -> Stream:
    s = Stream("tiny", fx)
    ET, CT, PT = "America/New_York", "America/Chicago", "America/Los_Angeles"
    L = local
    rosa = s.customer("rosa", "Rosa", "Diaz", "rosa.diaz@example.com", "+12125550110", "NY", "New York",
                      "10027", "410 W 118th St Apt 5B", ET, "0.08875")
    ben = s.customer("ben", "Ben", "Carter", "ben.carter@example.com", "+15125550121", "TX", "Austin", "78702",
                     "1100 E 6th St", CT, "0.0825")
    lena = s.customer("lena", "Lena", "Park", "lena.park@example.com", "+14155550132", "CA", "Oakland", "94612",
                      "1720 Broadway Apt 8", PT, "0.1025")
    s.consent(rosa, L(ET, "2026-03-02 10:29"), "subscribed", note="SMS box ticked at checkout.")
    rosa1 = s.order("rosa1", rosa, L(ET, "2026-03-02 10:30"), [("SKIN-MST-50", 1)],
                    "Confirmation now; upsell 12:30; quiz Thu 18:00; welcome Mon 9 10:00 EDT (Fri 10:30 is past 10:00).")
    f = s.fulfill(rosa1, L(ET, "2026-03-02 14:00"), "UPS")
    s.shipment(f, L(ET, "2026-03-02 17:00"), "in_transit", "Shipping update now.")
    s.shipment(f, L(ET, "2026-03-03 16:00"), "delivered", "Review request Fri 10:00.")
    s.checkout("ben-checkout", ben, L(CT, "2026-03-03 14:00"), [("SKIN-SPF-50", 1)],
               "Abandoned: reminders Tue 15:00 and Wed 14:00 CST.")
    s.consent(ben, L(CT, "2026-03-03 14:00:05"), "subscribed", note="Consent from the checkout box.")
    s.consent(lena, L(PT, "2026-03-04 10:29"), "subscribed", note="SMS box ticked at checkout.")
    s.order("lena1", lena, L(PT, "2026-03-04 10:30"), [("HOME-CNDL-JUN", 1)],
            "Confirmation now; upsell would be 12:30.")
    s.redeliver("order:lena1:create", L(PT, "2026-03-04 10:41"), lena, "Duplicate: ignored.")
    s.reply(lena, L(PT, "2026-03-04 11:05"), "STOP", "Opt-out: the 12:30 upsell and the welcome are cancelled.")
    s.reply(rosa, L(ET, "2026-03-05 18:04"), "1", "Answer to the 18:00 quiz: hydration routine.")
    x = s.expect
    x(rosa, "order_confirmation", L(ET, "2026-03-02 10:30"), "confirmation {rosa1}")
    x(rosa, "order_upsell", L(ET, "2026-03-02 12:30"), "bestsellers (Daily Moisturizer 50 ml)")
    x(rosa, "shipping_update", L(ET, "2026-03-02 17:00"), "on its way (UPS)")
    x(ben, "abandoned_checkout", L(CT, "2026-03-03 15:00"), "you left something in your cart")
    x(lena, "order_confirmation", L(PT, "2026-03-04 10:30"), "confirmation {lena1}", why="once, despite the duplicate")
    x(lena, "(keyword)", L(PT, "2026-03-04 11:05"), "opt-out confirmation", why="STOP")
    x(lena, "order_upsell", L(PT, "2026-03-04 12:30"), "bestsellers", sent=None, why="cancelled by STOP")
    x(ben, "abandoned_checkout", L(CT, "2026-03-04 14:00"), "cart saved one more day")
    x(rosa, "skin_quiz", L(ET, "2026-03-05 18:00"), "what is your skin goal?")
    x(rosa, "skin_quiz", L(ET, "2026-03-05 18:04"), "Hydration it is")
    x(rosa, "review_request", L(ET, "2026-03-06 10:00"), "Hi Rosa! How is your order…",
      why="delivered Tue 16:00 + 2 d = Thu 16:00, then the next weekday 10:00")
    return s


# ---------------------------------------------------------------------------------------------
# Checks: every line parses, lines are time-sorted, ids are well formed and tie up.

WINDOWS = {"week.jsonl": ("2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z"),
           "tiny.jsonl": ("2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z")}
AREA_STATE = {"203": "CT", "212": "NY", "201": "NJ", "617": "MA", "305": "FL", "205": "AL", "251": "AL",
              "512": "TX", "312": "IL", "303": "CO", "602": "AZ", "415": "CA", "206": "WA"}


def check_file(path: Path) -> list[str]:
    problems: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    lo, hi = WINDOWS[path.name]
    prev = ""
    deliveries: dict[str, int] = {}
    orders, fulfillments = set(), set()
    for n, text in enumerate(lines, 1):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            problems.append(f"{path.name}:{n}: not JSON: {e}")
            continue
        at = obj.get("received_at") or obj.get("at")
        if not (lo <= at < hi):
            problems.append(f"{path.name}:{n}: {at} outside {lo}..{hi}")
        if at < prev:
            problems.append(f"{path.name}:{n}: {at} before {prev}")
        prev = at
        if obj["source"] == "shopify":
            h, b = obj["headers"], obj["body"]
            if h["X-Shopify-Topic"] != obj["topic"]:
                problems.append(f"{path.name}:{n}: topic header mismatch")
            deliveries[h["X-Shopify-Event-Id"]] = deliveries.get(h["X-Shopify-Event-Id"], 0) + 1
            if obj["topic"].startswith("orders/"):
                orders.add(b["id"])
                for key in ("id", "order_number"):
                    if key not in b:
                        problems.append(f"{path.name}:{n}: order without {key}")
                ship = b["shipping_address"]
                area = b["customer"]["phone"][2:5]
                if obj["topic"] == "orders/create" and AREA_STATE[area] != ship["province_code"]:
                    problems.append(f"{path.name}:{n}: note: area code {area} ({AREA_STATE[area]}) ships to "
                                    f"{ship['province_code']}")
                if b["test"] is not False or b["cancelled_at"] is not None or b["financial_status"] != "paid":
                    problems.append(f"{path.name}:{n}: order not a live paid order")
                total = sum(Decimal(li["price"]) * li["quantity"] for li in b["line_items"])
                total += Decimal(b["total_shipping_price_set"]["shop_money"]["amount"]) + Decimal(b["total_tax"])
                if money(total) != b["total_price"]:
                    problems.append(f"{path.name}:{n}: total_price {b['total_price']} != {money(total)}")
            if obj["topic"] == "fulfillments/create":
                fulfillments.add(b["id"])
                if b["order_id"] not in orders:
                    problems.append(f"{path.name}:{n}: fulfillment for an unknown order")
            if obj["topic"] == "fulfillment_events/create":
                if b["order_id"] not in orders or b["fulfillment_id"] not in fulfillments:
                    problems.append(f"{path.name}:{n}: fulfillment event does not tie up")
            for key, value in _walk(b):
                if (key == "id" or key.endswith("_id")) and isinstance(value, int) and value > 10**16:
                    if len(str(value)) != 18:
                        problems.append(f"{path.name}:{n}: {key}={value} is not 18 digits")
        else:
            if obj["type"] == "sms.replied" and not obj["data"]["message_sid"].startswith("SM"):
                problems.append(f"{path.name}:{n}: bad message_sid")
    dups = [k for k, v in deliveries.items() if v > 1]
    if len(dups) != 1:
        problems.append(f"{path.name}: expected exactly one re-delivered event, found {len(dups)}")
    # Informational notes (deliberate data, e.g. a CT number shipping to NY) are prefixed "note:".
    return problems


def _walk(obj, key=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v, key)
    else:
        yield key, obj


def self_check_time() -> None:
    assert iso_zone(local("America/New_York", "2026-03-08 01:40")) == "2026-03-08T01:40:00-05:00"
    assert iso_z(local("America/New_York", "2026-03-08 03:10")) == "2026-03-08T07:10:00Z"
    assert iso_z(local("America/Phoenix", "2026-03-09 10:00")) == "2026-03-09T17:00:00Z"
    try:
        local("America/Chicago", "2026-03-08 02:30")
        raise AssertionError("02:30 on 2026-03-08 does not exist in Chicago")
    except ValueError:
        pass
    try:  # cross-check against the tz database when the system has one
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        zones = {zone: ZoneInfo(zone) for zone in ZONES}
    except (ImportError, ZoneInfoNotFoundError):
        return
    for zone, zi in zones.items():
        t = datetime(2026, 3, 1, tzinfo=UTC)
        while t < datetime(2026, 3, 31, tzinfo=UTC):
            assert t.astimezone(zi).utcoffset() == timedelta(hours=utc_offset(zone, t)), (zone, t)
            t += timedelta(minutes=30)


# ---------------------------------------------------------------------------------------------
# README tables.

def tables(s: Stream) -> str:
    names = s.order_names()
    out = []
    day = None
    for b in sorted(s.beats, key=lambda b: b.at):
        z = b.customer.zone if b.customer else SHOP_ZONE
        d = b.at.astimezone(UTC).strftime("%a %d %b")
        if d != day:
            day = d
            out.append(f"\n**{d} (UTC)**\n\n| UTC | local | customer | event | flows and expected messages |\n|---|---|---|---|---|")
        who = b.customer.label if b.customer else ""
        out.append(f"| {b.at.astimezone(UTC):%H:%M} | {wall(b.at, z)} | {who} | {b.what.format(**names)} | "
                   f"{b.note.format(**names)} |")
    out.append("\n**Messages we expect inside the stream** (sorted by due time)\n")
    out.append("| due (local) | sent (local) | sent (UTC) | customer | flow | message | why |\n|---|---|---|---|---|---|---|")
    for e in sorted(s.expects, key=lambda e: (e.due, e.customer.key)):
        z = e.customer.zone
        sent = wall(e.sent, z) if e.sent else "—"
        sent_utc = iso_z(e.sent) if e.sent else "—"
        out.append(f"| {wall(e.due, z)} | {sent} | {sent_utc} | {e.customer.name} | `{e.flow}` | "
                   f"{e.text.format(**names)} | {e.why.format(**names)} |")
    return "\n".join(out)


def write(stream: Stream, path: Path) -> int:
    lines = stream.render()
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for obj in lines:
            fh.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    return len(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="folder to write to (default: this script's)")
    ap.add_argument("--table", action="store_true", help="print the README tables")
    ap.add_argument("--check", action="store_true", help="only check the files already written")
    args = ap.parse_args()
    self_check_time()
    fx = Fixtures()
    streams = {"week.jsonl": build_week(fx), "tiny.jsonl": build_tiny(fx)}
    if not args.check:
        for name, stream in streams.items():
            n = write(stream, args.out / name)
            print(f"wrote {args.out / name}: {n} lines (fixtures from {fx.dir})")
    failed = False
    for name in streams:
        for p in check_file(args.out / name):
            print(p)
            failed |= "note:" not in p
    if args.table:
        for name, stream in streams.items():
            if args.check:
                stream.render()
            print(f"\n### {name}\n{tables(stream)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
