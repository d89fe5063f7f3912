//! The `aftercart` host module: the only imports a plugin may have. Every function is a pure
//! function of the call's input JSON (no clock, no randomness, no I/O), so a plugin that uses
//! them stays deterministic. They exist so that a hand-written WAT plugin needs no JSON parser.

use super::error::{LoadErrorKind, PluginError};
use rust_decimal::Decimal;
use serde_json::Value;
use std::cmp::Ordering;
use std::path::Path;
use std::str::FromStr;
use wasmtime::{Caller, ExternType, FuncType, Linker, Module, ResourceLimiter, Trap, ValType};

/// The import module name plugins may use.
pub const HOST_MODULE: &str = "aftercart";

/// Returned when the path names nothing (or `null`).
pub const NOT_FOUND: i32 = -1;
/// Returned by `field` when `out_cap` is smaller than the value; call `field_len` first.
pub const TOO_SMALL: i32 = -2;
/// Returned by `decimal_cmp` when the field is not a decimal number.
pub const NOT_A_NUMBER: i32 = -2;

/// Fuel charged per host call plus one per byte touched: host work must not be free, or a
/// loop of host calls could outrun the fuel budget's intent.
const CALL_FUEL: u64 = 50;

/// (name, params, result) of each host function; all arguments are i32.
const FUNCS: &[(&str, usize)] = &[
    ("field", 4),
    ("field_len", 2),
    ("array_len", 2),
    ("decimal_cmp", 4),
];

/// Per-call store data: the input the host functions read, and the memory limiter.
pub(crate) struct CallState {
    input: String,
    pub(crate) limiter: Limiter,
}

impl CallState {
    pub(crate) fn new(input: &str, memory_limit: usize) -> Self {
        CallState {
            input: input.to_owned(),
            limiter: Limiter {
                limit: memory_limit,
                peak: 0,
                hit: false,
            },
        }
    }

    /// The value at a dotted path, `None` when missing or `null`. Scans the input text
    /// without building a tree: only the leaf is parsed, which keeps a host call to a few
    /// microseconds on a realistic profile. Malformed input reads as missing.
    fn lookup(&self, path: &str) -> Option<Value> {
        let raw = scan::find(&self.input, path)?;
        serde_json::from_str::<Value>(raw)
            .ok()
            .filter(|v| !v.is_null())
    }
}

/// Memory limiter that also records the peak and whether the limit was hit, so a failed
/// `memory.grow` is reported as `memory_limit` rather than as a generic trap.
pub(crate) struct Limiter {
    limit: usize,
    pub(crate) peak: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            // Trap rather than return -1: a plugin that ignores the failed grow would otherwise
            // spin until fuel runs out and be misreported as `out_of_fuel`.
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes exceeded",
                self.limit
            )));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 10_000)
    }
}

/// The text a field's value is given to the plugin as: strings raw (no quotes), numbers and
/// booleans as their JSON text, arrays and objects as canonical JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => super::canonical_json(other),
    }
}

fn charge(caller: &mut Caller<'_, CallState>, bytes: usize) -> wasmtime::Result<()> {
    let cost = CALL_FUEL + bytes as u64;
    let left = caller.get_fuel()?;
    if left < cost {
        caller.set_fuel(0)?;
        return Err(wasmtime::Error::new(Trap::OutOfFuel));
    }
    caller.set_fuel(left - cost)
}

/// Reads `len` bytes at `ptr` from the plugin's memory as UTF-8; out of bounds is a trap with
/// the function's name, so the merchant sees which call was wrong.
fn read_str(
    caller: &mut Caller<'_, CallState>,
    func: &str,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<String> {
    let memory = caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::Error::msg("plugin exports no memory"))?;
    let data = memory.data(&caller);
    let (p, l) = (ptr as u32 as usize, len as u32 as usize);
    let bytes = data.get(p..p.saturating_add(l)).ok_or_else(|| {
        wasmtime::Error::msg(format!(
            "aftercart.{func}: string at {p}+{l} is outside memory"
        ))
    })?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| wasmtime::Error::msg(format!("aftercart.{func}: string is not UTF-8")))
}

fn decimal_of(v: &Value) -> Option<Decimal> {
    let text = match v {
        Value::String(s) => s.as_str(),
        Value::Number(n) => return parse_decimal(&n.to_string()),
        _ => return None,
    };
    parse_decimal(text.trim())
}

fn parse_decimal(s: &str) -> Option<Decimal> {
    Decimal::from_str(s)
        .ok()
        .or_else(|| Decimal::from_scientific(s).ok())
}

/// The linker every plugin is instantiated with: only the `aftercart` functions.
pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut l = Linker::new(engine);
    // field(path_ptr, path_len, out_ptr, out_cap) -> bytes written | -1 missing | -2 too small
    l.func_wrap(
        HOST_MODULE,
        "field",
        |mut caller: Caller<'_, CallState>,
         pp: i32,
         pl: i32,
         op: i32,
         oc: i32|
         -> wasmtime::Result<i32> {
            let path = read_str(&mut caller, "field", pp, pl)?;
            let Some(text) = caller.data().lookup(&path).map(|v| value_text(&v)) else {
                charge(&mut caller, path.len())?;
                return Ok(NOT_FOUND);
            };
            charge(&mut caller, path.len() + text.len())?;
            if text.len() > oc as u32 as usize {
                return Ok(TOO_SMALL);
            }
            let memory = caller
                .get_export("memory")
                .and_then(|e| e.into_memory())
                .expect("checked by read_str");
            memory
                .write(&mut caller, op as u32 as usize, text.as_bytes())
                .map_err(|_| {
                    wasmtime::Error::msg(format!(
                        "aftercart.field: output buffer at {op} is outside memory"
                    ))
                })?;
            Ok(text.len() as i32)
        },
    )?;
    // field_len(path_ptr, path_len) -> byte length of what `field` would write | -1 missing
    l.func_wrap(
        HOST_MODULE,
        "field_len",
        |mut caller: Caller<'_, CallState>, pp: i32, pl: i32| -> wasmtime::Result<i32> {
            let path = read_str(&mut caller, "field_len", pp, pl)?;
            let n = caller
                .data()
                .lookup(&path)
                .map(|v| value_text(&v).len() as i32)
                .unwrap_or(NOT_FOUND);
            charge(&mut caller, path.len())?;
            Ok(n)
        },
    )?;
    // array_len(path_ptr, path_len) -> number of elements | -1 missing or not an array
    l.func_wrap(
        HOST_MODULE,
        "array_len",
        |mut caller: Caller<'_, CallState>, pp: i32, pl: i32| -> wasmtime::Result<i32> {
            let path = read_str(&mut caller, "array_len", pp, pl)?;
            let n = match caller.data().lookup(&path) {
                Some(Value::Array(a)) => a.len() as i32,
                _ => NOT_FOUND,
            };
            charge(&mut caller, path.len())?;
            Ok(n)
        },
    )?;
    // decimal_cmp(path_ptr, path_len, lit_ptr, lit_len) -> -1 | 0 | 1 (field vs literal),
    // -2 when the field is missing or not a decimal. Exact decimal arithmetic, never floats.
    l.func_wrap(
        HOST_MODULE,
        "decimal_cmp",
        |mut caller: Caller<'_, CallState>,
         pp: i32,
         pl: i32,
         lp: i32,
         ll: i32|
         -> wasmtime::Result<i32> {
            let path = read_str(&mut caller, "decimal_cmp", pp, pl)?;
            let lit = read_str(&mut caller, "decimal_cmp", lp, ll)?;
            charge(&mut caller, path.len() + lit.len())?;
            let rhs = parse_decimal(lit.trim()).ok_or_else(|| {
                wasmtime::Error::msg(format!(
                    "aftercart.decimal_cmp: `{lit}` is not a decimal literal"
                ))
            })?;
            Ok(
                match caller.data().lookup(&path).as_ref().and_then(decimal_of) {
                    None => NOT_A_NUMBER,
                    Some(lhs) => match lhs.cmp(&rhs) {
                        Ordering::Less => -1,
                        Ordering::Equal => 0,
                        Ordering::Greater => 1,
                    },
                },
            )
        },
    )?;
    Ok(l)
}

pub(crate) fn fmt_func(t: &FuncType) -> String {
    let list = |it: &mut dyn Iterator<Item = ValType>| {
        it.map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
    };
    let results: Vec<String> = t.results().map(|v| v.to_string()).collect();
    let res = match results.len() {
        0 => "()".to_owned(),
        1 => results[0].clone(),
        _ => format!("({})", results.join(", ")),
    };
    format!("({}) -> {res}", list(&mut t.params()))
}

/// Refuses every import outside the `aftercart` module, naming the first offender. Runs before
/// anything else about the module is trusted.
pub(crate) fn check_imports(module: &Module, path: &Path) -> Result<(), PluginError> {
    for imp in module.imports() {
        let (m, n) = (imp.module(), imp.name());
        let known = FUNCS
            .iter()
            .find(|(name, _)| m == HOST_MODULE && *name == n);
        let Some((_, arity)) = known else {
            return Err(PluginError::new(
                path,
                LoadErrorKind::ForbiddenImport {
                    module: m.to_owned(),
                    name: n.to_owned(),
                },
            ));
        };
        let expected = format!("({}) -> i32", vec!["i32"; *arity].join(", "));
        let found = match imp.ty() {
            ExternType::Func(f) => fmt_func(&f),
            ExternType::Memory(_) => "a memory".to_owned(),
            ExternType::Table(_) => "a table".to_owned(),
            ExternType::Global(_) => "a global".to_owned(),
            _ => "something else".to_owned(),
        };
        if found != expected {
            return Err(PluginError::new(
                path,
                LoadErrorKind::WrongSignature {
                    name: format!("{m}.{n}"),
                    expected,
                    found,
                },
            ));
        }
    }
    Ok(())
}

/// A minimal JSON path scanner over the input text: finds the raw text of the value at a
/// dotted path by skipping everything else, allocation-free.
mod scan {
    fn ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    }

    /// End (exclusive) of the string starting at `b[i] == '"'`.
    fn skip_str(b: &[u8], mut i: usize) -> Option<usize> {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    }

    /// End (exclusive) of the value starting at `i`.
    fn skip_value(b: &[u8], i: usize) -> Option<usize> {
        match *b.get(i)? {
            b'"' => skip_str(b, i),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut j = i;
                while j < b.len() {
                    match b[j] {
                        b'"' => {
                            j = skip_str(b, j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                None
            }
            _ => {
                let mut j = i;
                while j < b.len()
                    && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                {
                    j += 1;
                }
                (j > i).then_some(j)
            }
        }
    }

    fn key_matches(raw: &str, seg: &str) -> bool {
        // Keys with escapes are rare; decode only then.
        if raw.contains('\\') {
            serde_json::from_str::<String>(raw).is_ok_and(|k| k == seg)
        } else {
            raw.len() == seg.len() + 2 && &raw[1..raw.len() - 1] == seg
        }
    }

    /// Start of the member `seg` of the object or array at `i`.
    fn child(s: &str, i: usize, seg: &str) -> Option<usize> {
        let b = s.as_bytes();
        match *b.get(i)? {
            b'{' => {
                let mut j = ws(b, i + 1);
                if b.get(j) == Some(&b'}') {
                    return None;
                }
                loop {
                    if b.get(j) != Some(&b'"') {
                        return None;
                    }
                    let k_end = skip_str(b, j)?;
                    let hit = key_matches(s.get(j..k_end)?, seg);
                    j = ws(b, k_end);
                    if b.get(j) != Some(&b':') {
                        return None;
                    }
                    j = ws(b, j + 1);
                    if hit {
                        return Some(j);
                    }
                    j = ws(b, skip_value(b, j)?);
                    match b.get(j)? {
                        b',' => j = ws(b, j + 1),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                let want: usize = seg.parse().ok()?;
                let mut j = ws(b, i + 1);
                if b.get(j) == Some(&b']') {
                    return None;
                }
                for _ in 0..want {
                    j = ws(b, skip_value(b, j)?);
                    match b.get(j)? {
                        b',' => j = ws(b, j + 1),
                        _ => return None,
                    }
                }
                Some(j)
            }
            _ => None,
        }
    }

    /// The raw text of the value at `path` (empty path: the whole document).
    pub(super) fn find<'a>(s: &'a str, path: &str) -> Option<&'a str> {
        let b = s.as_bytes();
        let mut i = ws(b, 0);
        if !path.is_empty() {
            for seg in path.split('.') {
                i = child(s, i, seg)?;
            }
        }
        let end = skip_value(b, i)?;
        s.get(i..end)
    }

    #[cfg(test)]
    mod tests {
        use super::find;

        #[test]
        fn finds_values_by_path() {
            let s = r#" {"a": {"b\"c": 1, "d": [10, {"e": "x,}]"}, [1]], "f": null}, "g": true} "#;
            assert_eq!(find(s, "a.d.0"), Some("10"));
            assert_eq!(find(s, "a.d.1.e"), Some(r#""x,}]""#));
            assert_eq!(find(s, "a.d.2"), Some("[1]"));
            assert_eq!(find(s, "a.b\"c"), Some("1"));
            assert_eq!(find(s, "g"), Some("true"));
            assert_eq!(find(s, "a.f"), Some("null"));
            assert_eq!(find(s, "a.d.3"), None);
            assert_eq!(find(s, "a.x"), None);
            assert_eq!(find(s, "g.x"), None);
            assert_eq!(find("{", "a"), None);
            assert_eq!(find("", ""), None);
        }
    }
}
