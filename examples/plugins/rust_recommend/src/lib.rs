//! A cross-sell recommender as an aftercart ABI v1 plugin (wasm32-unknown-unknown): a
//! merchant-curated "goes with" table, skipping anything the person already bought.

use serde_json::{json, Value};

/// product id -> products that go with it, best first.
const GOES_WITH: &[(&str, &[&str])] = &[
    ("8042", &["8010", "8011", "8050"]), // kettle -> filters, scale, grinder
    ("8001", &["8010", "8020"]),         // dripper -> filters, beans
    ("8050", &["8020", "8021"]),         // grinder -> beans
];

#[no_mangle]
pub extern "C" fn abi_version() -> i32 {
    1
}

#[no_mangle]
pub extern "C" fn alloc(len: i32) -> i32 {
    let mut buf = Vec::<u8>::with_capacity(len.max(0) as usize);
    let ptr = buf.as_mut_ptr();
    std::mem::forget(buf);
    ptr as i32
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_owned)).collect()
}

/// Returns (output pointer << 32) | output length; the output is `{"product_ids": [...]}`.
///
/// # Safety
/// The host passes a pointer from `alloc` and the length it wrote there.
#[no_mangle]
pub unsafe extern "C" fn recommend(ptr: i32, len: i32) -> i64 {
    let input = std::slice::from_raw_parts(ptr as *const u8, len as usize);
    let v: Value = serde_json::from_slice(input).unwrap_or(Value::Null);
    let bought = ids(&v["profile"]["products_bought"]);
    let mut out: Vec<String> = Vec::new();
    for item in v["order"]["line_items"].as_array().into_iter().flatten() {
        let Some(id) = item["product_id"].as_str() else { continue };
        for (_, with) in GOES_WITH.iter().filter(|(k, _)| *k == id) {
            for w in with.iter().map(|w| w.to_string()) {
                if !bought.contains(&w) && !out.contains(&w) && out.len() < 16 {
                    out.push(w);
                }
            }
        }
    }
    let bytes = json!({ "product_ids": out }).to_string().into_bytes().into_boxed_slice();
    let (p, n) = (bytes.as_ptr() as u32 as i64, bytes.len() as i64);
    std::mem::forget(bytes);
    (p << 32) | n
}
