//! The product catalog and the built-in recommender. A recommendation is only useful if a
//! message can name the product, so the catalog keeps title, price, URL and tags, fed by a
//! shop's export file (JSON or CSV) and by Shopify `products/create` / `products/update`
//! webhooks. Pure: no I/O except the explicit [`Catalog::load`], no clock, no randomness.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Tag prefix a merchant uses to declare complements: a kettle tagged `pairs-with:filters`
/// makes products tagged `filters` its cross-sell.
pub const PAIRS_WITH: &str = "pairs-with:";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Shopify's product id as a string (ids overflow JavaScript numbers; strings are safe).
    pub id: String,
    pub title: String,
    /// The lowest variant price: the "from" price a message can quote.
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    pub url: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub image: Option<String>,
    /// Draft and archived products are kept (an update may revive them) but never recommended.
    #[serde(default = "yes")]
    pub available: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError(pub String);

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "catalog: {}", self.0)
    }
}

impl std::error::Error for CatalogError {}

fn err<T>(msg: impl Into<String>) -> Result<T, CatalogError> {
    Err(CatalogError(msg.into()))
}

/// Products by id; a `BTreeMap` so iteration (and so every answer) is in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    products: BTreeMap<String, Product>,
}

#[derive(Deserialize)]
struct CatalogFile {
    products: Vec<Value>,
}

impl Catalog {
    pub fn new() -> Self {
        Catalog::default()
    }

    pub fn get(&self, id: &str) -> Option<&Product> {
        self.products.get(id)
    }

    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Inserts or replaces a product.
    pub fn insert(&mut self, p: Product) {
        self.products.insert(p.id.clone(), p);
    }

    /// `products/delete`.
    pub fn remove(&mut self, id: &str) -> Option<Product> {
        self.products.remove(id)
    }

    /// Reads `.json` or `.csv` by extension. `shop_url` (e.g. `https://example.com`) builds
    /// `/products/{handle}` URLs for rows and payloads that carry no URL.
    pub fn load(path: &Path, shop_url: Option<&str>) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CatalogError(format!("{}: {e}", path.display())))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let r = if ext == "csv" {
            Catalog::from_csv(&text, shop_url)
        } else {
            Catalog::from_json(&text, shop_url)
        };
        // Errors of the parsers start with `line N: `; shown as `path:N: ...` (editor-clickable).
        r.map_err(|e| {
            let shown = path.display();
            match e.0.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
                Some((n, msg)) if n.parse::<usize>().is_ok() => {
                    CatalogError(format!("{shown}:{n}: {msg}"))
                }
                _ => CatalogError(format!("{shown}: {}", e.0)),
            }
        })
    }

    /// `{"products": [...]}` where each product is either aftercart's own shape (`id`, `title`,
    /// `price`, `url`, `tags`, `image`) or a Shopify product (as in the Admin API's
    /// `products.json`, recognised by its `variants`).
    pub fn from_json(text: &str, shop_url: Option<&str>) -> Result<Catalog, CatalogError> {
        let file: CatalogFile = serde_json::from_str(text).map_err(|e| {
            CatalogError(format!(
                "line {}: expected {{\"products\": [...]}}: {e}",
                e.line()
            ))
        })?;
        let lines = product_lines(text);
        let line = |i: usize| lines.get(i).copied().unwrap_or(1);
        let mut c = Catalog::new();
        for (i, v) in file.products.into_iter().enumerate() {
            if v.get("variants").is_some() {
                c.apply_shopify_product(&v, shop_url.unwrap_or(""))
                    .map_err(|e| {
                        CatalogError(format!("line {}: product #{}: {}", line(i), i + 1, e.0))
                    })?;
            } else {
                let p: Product = serde_json::from_value(v).map_err(|e| {
                    CatalogError(format!("line {}: product #{}: {e}", line(i), i + 1))
                })?;
                if p.id.is_empty() {
                    return err(format!("line {}: product #{}: empty `id`", line(i), i + 1));
                }
                c.insert(p);
            }
        }
        Ok(c)
    }

    /// A CSV export with a header row. Columns are matched by name, case-insensitively:
    /// `id`/`product id`, `handle`, `title`, `price`/`variant price`, `url`, `tags`,
    /// `image`/`image src`, `status`. Shopify's product export (one row per variant or image,
    /// later rows carrying only the handle) works: rows with the same id merge, keeping the
    /// first title and the lowest price. Without an id column the handle is the id.
    pub fn from_csv(text: &str, shop_url: Option<&str>) -> Result<Catalog, CatalogError> {
        let rows = parse_csv(text)?;
        let Some((header, body)) = rows.split_first() else {
            return Ok(Catalog::new());
        };
        let header = &header.1;
        let col = |names: &[&str]| {
            header
                .iter()
                .position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
        };
        let (c_id, c_handle) = (col(&["id", "product id", "product_id"]), col(&["handle"]));
        let (c_title, c_price) = (col(&["title"]), col(&["price", "variant price"]));
        let (c_url, c_tags, c_image, c_status) = (
            col(&["url"]),
            col(&["tags"]),
            col(&["image", "image src"]),
            col(&["status"]),
        );
        let c_published = col(&["published"]);
        if c_id.is_none() && c_handle.is_none() {
            return err("line 1: the CSV needs an `id` or a `handle` column");
        }
        let mut c = Catalog::new();
        for (line, row) in body.iter() {
            let line = *line;
            let get = |i: Option<usize>| {
                i.and_then(|i| row.get(i))
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
            };
            let handle = get(c_handle);
            let Some(id) = get(c_id).or(handle) else {
                continue;
            };
            let price = match get(c_price) {
                Some(p) => Some(Decimal::from_str(p).map_err(|_| {
                    CatalogError(format!("line {line}: price `{p}` is not a decimal"))
                })?),
                None => None,
            };
            let p = c.products.entry(id.to_owned()).or_insert_with(|| Product {
                id: id.to_owned(),
                title: String::new(),
                price: Decimal::ZERO,
                url: String::new(),
                tags: Vec::new(),
                image: None,
                available: true,
            });
            if p.title.is_empty() {
                p.title = get(c_title).unwrap_or("").to_owned();
            }
            if let Some(price) = price {
                if p.price.is_zero() || price < p.price {
                    p.price = price;
                }
            }
            if p.url.is_empty() {
                p.url = match (get(c_url), handle, shop_url) {
                    (Some(u), _, _) => u.to_owned(),
                    (None, Some(h), Some(base)) => product_url(base, h),
                    _ => String::new(),
                };
            }
            if p.tags.is_empty() {
                p.tags = split_tags(get(c_tags).unwrap_or(""));
            }
            if p.image.is_none() {
                p.image = get(c_image).map(str::to_owned);
            }
            // Shopify's export: `Status` active/draft/archived, `Published` TRUE/FALSE (online
            // store). Either one saying no keeps the product out of recommendations.
            if let Some(s) = get(c_status) {
                p.available = p.available && s.eq_ignore_ascii_case("active");
            }
            if let Some(s) = get(c_published) {
                p.available = p.available && !s.eq_ignore_ascii_case("false");
            }
        }
        Ok(c)
    }

    /// Applies a Shopify `products/create` or `products/update` webhook payload (REST shape:
    /// numeric `id`, `tags` as one comma-separated string, `variants[].price` strings,
    /// `image.src`, `status`). Returns the stored product.
    pub fn apply_shopify_product(
        &mut self,
        payload: &Value,
        shop_url: &str,
    ) -> Result<&Product, CatalogError> {
        let id = match payload.get("id") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return err("the product has no `id`"),
        };
        let title = payload
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut price: Option<Decimal> = None;
        for v in payload
            .get("variants")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let p = match v.get("price") {
                Some(Value::String(s)) => Decimal::from_str(s).ok(),
                // Money must not pass through a float; a numeric price is read from its text.
                Some(Value::Number(n)) => Decimal::from_str(&n.to_string()).ok(),
                _ => None,
            };
            if let Some(p) = p {
                price = Some(price.map_or(p, |q: Decimal| q.min(p)));
            }
        }
        let tags = match payload.get("tags") {
            Some(Value::String(s)) => split_tags(s),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            _ => Vec::new(),
        };
        let image = payload
            .get("image")
            .and_then(|i| i.get("src"))
            .or_else(|| {
                payload
                    .get("images")
                    .and_then(|a| a.get(0))
                    .and_then(|i| i.get("src"))
            })
            .and_then(Value::as_str)
            .map(str::to_owned);
        let handle = payload.get("handle").and_then(Value::as_str).unwrap_or("");
        let url = if handle.is_empty() || shop_url.is_empty() {
            self.products
                .get(&id)
                .map(|p| p.url.clone())
                .unwrap_or_default()
        } else {
            product_url(shop_url, handle)
        };
        // Shopify: `status` is active, draft or archived; `published_at` null means the product
        // is not published to the online store, so a link to it would be a 404.
        let available = payload
            .get("status")
            .and_then(Value::as_str)
            .is_none_or(|s| s == "active")
            && !matches!(payload.get("published_at"), Some(Value::Null));
        let old_price = self.products.get(&id).map(|p| p.price);
        let p = Product {
            id: id.clone(),
            title,
            price: price.or(old_price).unwrap_or(Decimal::ZERO),
            url,
            tags,
            image,
            available,
        };
        self.products.insert(id.clone(), p);
        Ok(&self.products[&id])
    }
}

fn product_url(base: &str, handle: &str) -> String {
    format!("{}/products/{handle}", base.trim_end_matches('/'))
}

/// Shopify stores tags as one comma-separated string; some exports use `;`.
fn split_tags(s: &str) -> Vec<String> {
    let mut tags: Vec<String> = s
        .split([',', ';'])
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

/// RFC 4180 CSV: quoted fields, doubled quotes, newlines inside quotes, CRLF or LF. Each row
/// comes with the line it starts on (a quoted field may span lines), for error messages.
fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, CatalogError> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let (mut quoted, mut any) = (false, false);
    let (mut line, mut row_line, mut quote_line) = (1usize, 1usize, 1usize);
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    while let Some(c) = chars.next() {
        if !any {
            row_line = line;
        }
        any = true;
        if c == '\n' {
            line += 1;
        }
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                quote_line = line;
            }
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push((row_line, std::mem::take(&mut row)));
                any = false;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return err(format!(
            "line {quote_line}: unterminated quoted field (a `\"` opened here is never closed)"
        ));
    }
    if any {
        row.push(field);
        rows.push((row_line, row));
    }
    Ok(rows)
}

/// The line on which each element of the top-level `products` array starts (JSON text that
/// already parsed): a scan of brackets outside strings, so errors can name a line.
fn product_lines(text: &str) -> Vec<usize> {
    let (mut depth, mut line, mut in_str, mut esc) = (0usize, 1usize, false, false);
    let mut out = Vec::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' => {
                if depth == 2 && c == '{' {
                    out.push(line);
                }
                depth += 1;
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    out
}

/// Orders kept for "bought together": the most recent ones, oldest dropped first. Enough for a
/// shop's co-purchase pattern; bounded so replaying a long log cannot grow memory without end.
pub const ORDER_HISTORY_MAX: usize = 20_000;

/// How many products `recommend()` gives a flow (a message names one or two; a branch counts).
pub const RECOMMEND_COUNT: usize = 5;

/// aftercart's own order history: order id and the product ids in it, in arrival order. No
/// personal data (no customer, no address), so it may live outside the sealed person records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderHistory {
    orders: VecDeque<(String, Vec<String>)>,
    ids: BTreeSet<String>,
}

impl OrderHistory {
    pub const fn new() -> Self {
        OrderHistory {
            orders: VecDeque::new(),
            ids: BTreeSet::new(),
        }
    }

    /// Records an order once (Shopify sends `orders/create`, `orders/paid`, ... for the same
    /// order; the first one counts). Orders without products (custom items only) are skipped.
    pub fn record(&mut self, order_id: &str, product_ids: Vec<String>) {
        if product_ids.is_empty() || !self.ids.insert(order_id.to_owned()) {
            return;
        }
        self.orders.push_back((order_id.to_owned(), product_ids));
        if self.orders.len() > ORDER_HISTORY_MAX {
            if let Some((id, _)) = self.orders.pop_front() {
                self.ids.remove(&id);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    pub fn orders(&self) -> impl Iterator<Item = &(String, Vec<String>)> {
        self.orders.iter()
    }

    /// A history holding `orders` (oldest first), as [`OrderHistory::orders`] listed them: how
    /// the runtime restores its snapshot.
    pub fn from_orders(orders: Vec<(String, Vec<String>)>) -> OrderHistory {
        let mut h = OrderHistory::new();
        for (id, products) in orders {
            h.record(&id, products);
        }
        h
    }
}

/// What the engine reads to recommend: the catalog and the order history. The host keeps it
/// current from the event log (`products/*` and `orders/create` webhooks) and hands it to every
/// `engine::step_with` call, so the engine stays pure and a replay of the log rebuilds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShopData {
    pub catalog: Catalog,
    pub orders: OrderHistory,
    /// The last `products/*` webhook applied per product id (topic, payload): what the runtime
    /// snapshots so that a restart re-applies the catalog's changes without replaying the log.
    /// Each product webhook carries the whole product, so the last one per id decides.
    pub product_webhooks: BTreeMap<String, (String, Value)>,
}

/// Nothing known: what `engine::step` (without shop data) recommends from.
pub static EMPTY: ShopData = ShopData {
    catalog: Catalog {
        products: BTreeMap::new(),
    },
    orders: OrderHistory::new(),
    product_webhooks: BTreeMap::new(),
};

/// The product ids of an order payload's line items (Shopify REST: `line_items[].product_id`,
/// a number or null for custom items), as strings, in order, without duplicates.
pub fn order_product_ids(order: &Value) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for li in order
        .get("line_items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = match li.get("product_id") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => continue,
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

impl ShopData {
    /// Applies a Shopify `products/create`, `products/update` or `products/delete` webhook.
    /// `Ok(false)` for any other topic. Errors say what is wrong with the payload.
    pub fn apply_product_webhook(
        &mut self,
        topic: &str,
        body: &Value,
        shop_url: &str,
    ) -> Result<bool, CatalogError> {
        let id = || match body.get("id") {
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        match topic {
            "products/create" | "products/update" => {
                self.catalog.apply_shopify_product(body, shop_url)?;
            }
            // products/delete sends only `{"id": ...}`.
            "products/delete" => {
                let Some(id) = id() else {
                    return err("products/delete: the payload has no `id`");
                };
                self.catalog.remove(&id);
            }
            _ => return Ok(false),
        }
        if let Some(id) = id() {
            self.product_webhooks
                .insert(id, (topic.to_string(), body.clone()));
        }
        Ok(true)
    }

    /// The built-in recommendation for a person: see [`recommend`].
    pub fn recommend(&self, bought: &[String], current_order: &[String], n: usize) -> Vec<String> {
        recommend(
            &self.catalog,
            self.orders.orders(),
            bought,
            current_order,
            n,
        )
    }

    /// Ids a plugin answered, kept only when the catalog knows them and they can be sold (a
    /// message can only name a product it knows; draft or archived products are never offered).
    pub fn known_available(&self, ids: &[String]) -> Vec<String> {
        ids.iter()
            .filter(|id| self.catalog.get(id).is_some_and(|p| p.available))
            .cloned()
            .collect()
    }
}

/// The built-in recommender, the default when a flow names no plugin. Ranks every available
/// catalog product the person has not bought (and that is not in the current order) by:
///
/// 1. bought together: in how many orders of aftercart's own `order_history` the product
///    appears with one of the anchor products (the current order's, or, when there is no
///    current order, everything the person bought);
/// 2. complementary tags: how many of the product's tags an anchor declares with
///    `pairs-with:TAG`;
/// 3. shared tags with the anchors (same collection), the weakest signal;
///
/// then by product id, so the answer is a pure function of its inputs. Products with no
/// signal at all are not recommended: an empty answer lets the flow's fallback decide.
pub fn recommend<'h>(
    catalog: &Catalog,
    order_history: impl IntoIterator<Item = &'h (String, Vec<String>)>,
    bought_by_person: &[String],
    current_order: &[String],
    n: usize,
) -> Vec<String> {
    let anchors: BTreeSet<&str> = if current_order.is_empty() {
        bought_by_person
    } else {
        current_order
    }
    .iter()
    .map(String::as_str)
    .collect();
    let excluded: BTreeSet<&str> = bought_by_person
        .iter()
        .chain(current_order)
        .map(String::as_str)
        .collect();

    let mut together: BTreeMap<&str, u32> = BTreeMap::new();
    for (_, items) in order_history {
        let items: BTreeSet<&str> = items.iter().map(String::as_str).collect();
        if items.iter().any(|i| anchors.contains(i)) {
            for i in items {
                *together.entry(i).or_default() += 1;
            }
        }
    }
    let (mut pairs, mut shared): (BTreeSet<&str>, BTreeSet<&str>) = Default::default();
    for p in anchors.iter().filter_map(|a| catalog.get(a)) {
        for t in &p.tags {
            match t.strip_prefix(PAIRS_WITH) {
                Some(target) => pairs.insert(target.trim()),
                None => shared.insert(t.as_str()),
            };
        }
    }
    let mut ranked: Vec<((u32, usize, usize), &str)> = catalog
        .products()
        .filter(|p| p.available && !excluded.contains(p.id.as_str()))
        .map(|p| {
            let comp = p.tags.iter().filter(|t| pairs.contains(t.as_str())).count();
            let same = p
                .tags
                .iter()
                .filter(|t| shared.contains(t.as_str()))
                .count();
            (
                (
                    together.get(p.id.as_str()).copied().unwrap_or(0),
                    comp,
                    same,
                ),
                p.id.as_str(),
            )
        })
        .filter(|(score, _)| *score != (0, 0, 0))
        .collect();
    // Highest score first; equal scores in id order (the catalog iterates ids in order, and
    // the sort is stable, but say it explicitly).
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked
        .into_iter()
        .take(n)
        .map(|(_, id)| id.to_owned())
        .collect()
}
