//! A lifetime-value VIP segment as an aftercart ABI v1 plugin (wasm32-unknown-unknown).
//! Money arrives as decimal strings; it is compared in integer cents, never as a float.

use serde_json::Value;

#[no_mangle]
pub extern "C" fn abi_version() -> i32 {
    1
}

/// The host writes the input here. Leaked on purpose: the instance lives for one call only.
#[no_mangle]
pub extern "C" fn alloc(len: i32) -> i32 {
    let mut buf = Vec::<u8>::with_capacity(len.max(0) as usize);
    let ptr = buf.as_mut_ptr();
    std::mem::forget(buf);
    ptr as i32
}

/// "612.40" -> 61240. None for anything that is not a plain non-negative decimal.
fn cents(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 2 || whole.is_empty() {
        return None;
    }
    let frac = format!("{frac:0<2}");
    Some(whole.parse::<i64>().ok()? * 100 + frac.parse::<i64>().ok()?)
}

/// 1: VIP, 0: not, -1: the input is not the JSON we expect.
///
/// # Safety
/// The host passes a pointer from `alloc` and the length it wrote there.
#[no_mangle]
pub unsafe extern "C" fn segment(ptr: i32, len: i32) -> i32 {
    let input = std::slice::from_raw_parts(ptr as *const u8, len as usize);
    let Ok(v) = serde_json::from_slice::<Value>(input) else { return -1 };
    let p = &v["profile"];
    let spent = p["total_spent"].as_str().and_then(cents).unwrap_or(0);
    let orders = p["orders_count"].as_i64().unwrap_or(0);
    // A toy LTV model: what they spent, plus two more orders at their average if they are
    // a repeat customer. VIP from a predicted 800.00.
    let aov = p["average_order_value"].as_str().and_then(cents).unwrap_or(0);
    let predicted = spent + if orders >= 3 { 2 * aov } else { 0 };
    i32::from(predicted >= 80_000)
}
