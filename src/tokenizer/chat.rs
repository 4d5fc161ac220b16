//! Chat templates: the Jinja templates shipped with models (`tokenizer.chat_template`,
//! `tokenizer_config.json`), rendered as transformers renders them
//! (`_compile_jinja_template`): `trim_blocks` and `lstrip_blocks` on, Python string and
//! dict methods (`.strip()`, `.startswith()`, `.items()`, through minijinja-contrib's
//! pycompat), `raise_exception(msg)`, `strftime_now(fmt)` (UTC; not in the browser build),
//! and a `tojson` that writes what
//! Python's `json.dumps(x, ensure_ascii=False)` writes (`", "` and `": "` separators).
//!
//! Not like Python: map keys built inside a template come out sorted (minijinja's maps),
//! and `{% break %}` / `{% continue %}` need minijinja's `loop_controls` feature.

use minijinja::value::{Kwargs, Rest, StringInput, Value};
use minijinja::{Environment, Error, ErrorKind, State};
use serde::{Deserialize, Serialize};

use super::TokenizerError;
use crate::formats::date::UtcTime;

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// "system", "user", "assistant", ...
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Template instructions one rendering may run. A model file's template is code from a
/// stranger: a loop that never ends stops here with an error instead of holding the
/// server. Real templates run a few hundred per message (Llama 3's, Qwen's), so this is
/// tens of thousands of messages.
pub const TEMPLATE_FUEL: u64 = 20_000_000;

/// Most bytes one rendering may write: a template whose output grows without bound stops
/// here (far beyond any context a prompt can fill).
pub const TEMPLATE_OUTPUT_CAP: usize = 16 << 20;

/// Renders `template` over `messages`, with `add_generation_prompt`, `bos_token` and
/// `eos_token` in the context as transformers' `apply_chat_template` puts them. Bounded
/// by [`TEMPLATE_FUEL`], [`TEMPLATE_OUTPUT_CAP`] and minijinja's own limits (recursion
/// depth, `range` and repeated-string sizes): a hostile template is an error, never a hang.
pub fn render_chat(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, TokenizerError> {
    let limits = (TEMPLATE_FUEL, TEMPLATE_OUTPUT_CAP);
    render_chat_with(
        template,
        messages,
        add_generation_prompt,
        bos_token,
        eos_token,
        limits,
    )
}

/// [`render_chat`] with other bounds: `(fuel, output_cap)`. The fuzzer (`fuzz/`) uses
/// small ones so that a template that runs to its bound costs milliseconds, not seconds.
#[doc(hidden)]
pub fn render_chat_with(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
    (fuel, output_cap): (u64, usize),
) -> Result<String, TokenizerError> {
    let env = environment(fuel);
    let tmpl = env
        .template_from_str(template)
        .map_err(|e| template_error(&e))?;
    let mut out = CappedOutput {
        bytes: Vec::new(),
        cap: output_cap,
        over: false,
    };
    let rendered = tmpl.render_captured_to(
        minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token,
            eos_token => eos_token,
        },
        &mut out,
    );
    if out.over {
        return Err(TokenizerError::Template(format!(
            "the chat template wrote more than {}; refusing it",
            size_text(output_cap)
        )));
    }
    rendered.map_err(|e| template_error(&e))?;
    String::from_utf8(out.bytes)
        .map_err(|e| TokenizerError::Template(format!("the chat template wrote bad UTF-8: {e}")))
}

/// A template error's message: its kind, detail and line, then its causes. Not minijinja's
/// alternate form (`{:#}`): where minijinja keeps debug info (debug builds), that form
/// underlines the failing span with `end_col - start_col` carets, which overflows on some
/// spans (a fuzz finding: `fuzz/regressions/chat_template/debug-info-span-overflow`).
fn template_error(e: &Error) -> TokenizerError {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        message += &format!(": {c}");
        cause = c.source();
    }
    TokenizerError::Template(message)
}

/// "16 MiB", or bytes when not whole MiB.
fn size_text(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// A writer that takes up to `cap` bytes and fails past them.
struct CappedOutput {
    bytes: Vec<u8>,
    cap: usize,
    over: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.cap {
            self.over = true;
            return Err(std::io::Error::other("the chat template's output cap"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn environment(fuel: u64) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(fuel));
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(bounded_method);
    // minijinja sizes these filters' allocations by a number in the template
    // (`" ".repeat(width)`, `Vec::with_capacity(count)`); bounded versions replace them.
    env.add_filter("indent", bounded_indent);
    env.add_filter("format", bounded_format);
    env.add_filter("replace", bounded_replace);
    env.add_filter("slice", bounded_slice);
    env.add_filter("batch", bounded_batch);
    env.add_function("raise_exception", raise_exception);
    // The browser build has no clock through std (SystemTime::now panics there); templates
    // test `strftime_now is defined` and fall back to a fixed date.
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env
}

/// Largest width, precision, indent or count a template may pass to a filter whose
/// allocation it sizes; far beyond what any chat template formats.
const MAX_FILTER_SIZE: usize = 1 << 16;

/// Largest string a filter may build: a bound on intermediate values like the output cap
/// on the rendering.
const MAX_FILTER_OUTPUT: usize = TEMPLATE_OUTPUT_CAP;

fn too_large(what: String) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{what} is too large for a chat template"),
    )
}

fn check_size(what: &str, n: usize) -> Result<(), Error> {
    if n > MAX_FILTER_SIZE {
        return Err(too_large(format!("{what} {n} (at most {MAX_FILTER_SIZE})")));
    }
    Ok(())
}

/// Each width and precision in a printf (`%-10.3f`) or `str.format` (`{:>10}`) format
/// string: minijinja pads with a string of that length.
///
/// Also refuses non-ASCII text after the first `%` or `{`: minijinja 2.24's format parser
/// slices a spec a byte at a time and panics inside a multi-byte character (a fuzz finding:
/// `fuzz/regressions/chat_template/format-spec-non-ascii`).
fn check_format_string(fmt: &str) -> Result<(), Error> {
    let b = fmt.as_bytes();
    if let Some(first) = b.iter().position(|&c| c == b'%' || c == b'{') {
        if !b[first..].is_ascii() {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "a format string with non-ASCII text after its first % or { is not supported",
            ));
        }
    }
    let mut i = 0;
    while i < b.len() {
        let spec_end = match b[i] {
            b'%' => b[i + 1..]
                .iter()
                .position(|c| c.is_ascii_alphabetic() || *c == b'%'),
            b'{' => b[i + 1..].iter().position(|&c| c == b'}'),
            _ => {
                i += 1;
                continue;
            }
        };
        let spec = &b[i + 1..i + 1 + spec_end.unwrap_or(b.len() - i - 1)];
        for run in spec
            .split(|c| !c.is_ascii_digit())
            .filter(|r| !r.is_empty())
        {
            // more than 6 digits is above the bound whatever they say
            let n = if run.len() > 6 {
                usize::MAX
            } else {
                run.iter().fold(0, |n, d| n * 10 + (d - b'0') as usize)
            };
            check_size("a format width or precision", n)?;
        }
        i += 1 + spec.len();
    }
    Ok(())
}

/// minijinja's `indent`, bounded: the width, and the string it builds.
fn bounded_indent(
    value: StringInput<'_>,
    width: Option<usize>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let w = match width {
        Some(w) => w,
        None => kwargs.peek::<Option<usize>>("width")?.unwrap_or(4),
    };
    check_size("indent width", w)?;
    let lines = value.as_str().bytes().filter(|&c| c == b'\n').count() + 1;
    if value.as_str().len() + lines * w > MAX_FILTER_OUTPUT {
        return Err(too_large(format!("indenting {lines} lines by {w}")));
    }
    minijinja::filters::indent(value, width, first, blank, kwargs)
}

/// minijinja's printf-style `format`, with its widths and precisions bounded.
fn bounded_format(state: &State, format: &Value, args: Rest<Value>) -> Result<Value, Error> {
    if let Some(f) = format.as_str() {
        check_format_string(f)?;
    }
    minijinja::filters::format(state, format, args)
}

/// Length of `s` with each `from` replaced by `to` (at most `count` of them).
fn replaced_len(s: &str, from: &str, to: &str, count: Option<usize>) -> usize {
    if to.len() <= from.len() {
        return s.len();
    }
    let n = if from.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(from).count()
    };
    let n = count.map_or(n, |c| n.min(c));
    s.len()
        .saturating_add(n.saturating_mul(to.len() - from.len()))
}

/// minijinja's `replace`, refusing a result beyond [`MAX_FILTER_OUTPUT`].
fn bounded_replace(
    state: &State,
    value: StringInput<'_>,
    from: StringInput<'_>,
    to: StringInput<'_>,
) -> Result<Value, Error> {
    let len = replaced_len(value.as_str(), from.as_str(), to.as_str(), None);
    if len > MAX_FILTER_OUTPUT {
        return Err(too_large(format!("a replace result of {len} bytes")));
    }
    minijinja::filters::replace(state, value, from, to)
}

fn bounded_slice(
    state: &State,
    value: Value,
    count: usize,
    fill_with: Option<Value>,
) -> Result<Value, Error> {
    check_size("slice count", count)?;
    minijinja::filters::slice(state, value, count, fill_with)
}

fn bounded_batch(
    state: &State,
    value: Value,
    count: usize,
    fill_with: Option<Value>,
) -> Result<Value, Error> {
    check_size("batch count", count)?;
    minijinja::filters::batch(state, value, count, fill_with)
}

/// Python's string, dict and list methods (minijinja-contrib's pycompat), with the
/// string methods that size their result by their arguments bounded as the filters are.
fn bounded_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        match method {
            "format" => check_format_string(s)?,
            "replace" => {
                let arg = |i: usize| args.get(i).and_then(Value::as_str).unwrap_or("");
                let count = args
                    .get(2)
                    .and_then(|c| i64::try_from(c.clone()).ok())
                    .and_then(|c| usize::try_from(c).ok());
                let len = replaced_len(s, arg(0), arg(1), count);
                if len > MAX_FILTER_OUTPUT {
                    return Err(too_large(format!("a replace result of {len} bytes")));
                }
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `tojson(indent=None, sort_keys=False, ensure_ascii=False, separators=None)` as Python.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => {
                let n = i64::try_from(v.clone()).map_err(|_| {
                    Error::new(ErrorKind::InvalidOperation, "tojson: indent must be an int")
                })?;
                let n = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
                check_size("tojson indent", n.min(MAX_FILTER_SIZE + 1))?;
                " ".repeat(n)
            }
        }),
    };
    if let Some(ind) = &indent {
        check_size("tojson indent", ind.len())?;
    }
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([a, b]) => (a.clone(), b.clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be (item, key)",
            ))
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
        over: std::cell::Cell::new(false),
    };
    let mut out = String::new();
    style.write(&json, 0, &mut out);
    if style.over.get() {
        return Err(too_large(format!(
            "tojson output over {MAX_FILTER_OUTPUT} bytes"
        )));
    }
    Ok(Value::from_safe_string(out))
}

/// Python `json.dumps` formatting options.
struct JsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
    /// the output passed [`MAX_FILTER_OUTPUT`]
    over: std::cell::Cell<bool>,
}

impl JsonStyle {
    fn string(&self, s: &str, out: &mut String) {
        // serde_json escapes exactly what Python does with ensure_ascii=False.
        let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        if !self.ensure_ascii {
            out.push_str(&quoted);
            return;
        }
        for c in quoted.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }

    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(ind) = &self.indent {
            // indentation is what can grow past the value's own size
            if out.len() + depth * ind.len() > MAX_FILTER_OUTPUT {
                self.over.set(true);
                return;
            }
            out.push('\n');
            for _ in 0..depth {
                out.push_str(ind);
            }
        }
    }

    fn write(&self, v: &serde_json::Value, depth: usize, out: &mut String) {
        use serde_json::Value as J;
        match v {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Number(n) => out.push_str(&n.to_string()),
            J::String(s) => self.string(s, out),
            J::Array(items) if items.is_empty() => out.push_str("[]"),
            J::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push(']');
            }
            J::Object(map) if map.is_empty() => out.push_str("{}"),
            J::Object(map) => {
                let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.string(k, out);
                    out.push_str(&self.key_sep);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push('}');
            }
        }
    }
}

/// Python's `datetime.now().strftime(fmt)` for the common directives (UTC; this crate has
/// no time zone database). Unknown directives are kept as written.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
fn strftime_now(fmt: String) -> Result<Value, Error> {
    let secs = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(Value::from(strftime(&fmt, secs)))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Formats UNIX time `secs` (UTC).
fn strftime(fmt: &str, secs: i64) -> String {
    let t = UtcTime::from_unix(secs);
    let (year, weekday) = (t.year, t.weekday as usize);
    let [month, day, h, m, s] = [t.month, t.day, t.hour, t.minute, t.second].map(i64::from);
    let month_name = MONTHS[(month - 1) as usize];

    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut d = chars.next();
        let no_pad = d == Some('-');
        if no_pad {
            d = chars.next();
        }
        let num = |v: i64| {
            if no_pad {
                v.to_string()
            } else {
                format!("{v:02}")
            }
        };
        match d {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&num(year.rem_euclid(100))),
            Some('m') => out.push_str(&num(month)),
            Some('d') => out.push_str(&num(day)),
            Some('H') => out.push_str(&num(h)),
            Some('M') => out.push_str(&num(m)),
            Some('S') => out.push_str(&num(s)),
            Some('B') => out.push_str(month_name),
            Some('b') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_known_dates() {
        // 2024-07-26 00:00:00 UTC was a Friday.
        assert_eq!(strftime("%d %b %Y", 1_721_952_000), "26 Jul 2024");
        assert_eq!(
            strftime("%A %B %-d, %H:%M:%S %%", 1_721_952_000 + 3_723),
            "Friday July 26, 01:02:03 %"
        );
        assert_eq!(strftime("%Y-%m-%d", 0), "1970-01-01");
        assert_eq!(strftime("%Y-%m-%d", 951_782_400), "2000-02-29");
    }

    /// Templates that never end, write without bound or recurse without end are errors
    /// that say why, each within a couple of seconds.
    #[test]
    fn hostile_templates_are_bounded() {
        let cases = [
            (
                "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
                "fuel",
            ),
            (
                "{% for a in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
                "more than 16 MiB",
            ),
            (
                "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                "recursion",
            ),
            ("{{ 'x' * 100000000000 }}", "too large"),
            (
                "{% for a in range(10000000000) %}{% endfor %}",
                "too many elements",
            ),
        ];
        for (template, why) in cases {
            let start = std::time::Instant::now();
            let err = render_chat(template, &[], false, "", "").unwrap_err();
            let took = start.elapsed();
            assert!(err.to_string().contains(why), "{template}: {err}");
            assert!(took.as_secs_f64() < 10.0, "{template}: {took:?}");
        }
        // a long real conversation stays well inside the fuel
        let msgs: Vec<ChatMessage> = (0..2000)
            .map(|i| ChatMessage::new(if i % 2 == 0 { "user" } else { "assistant" }, "hello"))
            .collect();
        let t = "{% for m in messages %}{% if loop.first %}{{ bos_token }}{% endif %}<|{{ m.role }}|>{{ m.content | trim }}{% if not loop.last %}\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
        let out = render_chat(t, &msgs, true, "<s>", "</s>").unwrap();
        assert_eq!(out.matches("hello").count(), 2000);
    }

    #[test]
    fn python_like_features() {
        let msgs = [
            ChatMessage::new("system", "  be brief  "),
            ChatMessage::new("user", "hi"),
        ];
        let t = "{% for m in messages %}\n  {% if m.role.startswith('sys') %}[{{ m.content.strip() }}]{% else %}{{ m.role.upper() }}: {{ m.content }}{% endif %}\n{% endfor %}{{ eos_token }}";
        let out = render_chat(t, &msgs, false, "<s>", "</s>").unwrap();
        assert_eq!(out, "[be brief]USER: hi</s>");
    }

    #[test]
    fn tojson_like_python() {
        let t = r#"{{ {"a": [1, 2.5, "é\n"], "b": none} | tojson }}|{{ [] | tojson }}|{{ {"x": {"y": 1}} | tojson(indent=2) }}|{{ "é" | tojson(ensure_ascii=true) }}"#;
        let out = render_chat(t, &[], false, "", "").unwrap();
        assert_eq!(
            out,
            "{\"a\": [1, 2.5, \"é\\n\"], \"b\": null}|[]|{\n  \"x\": {\n    \"y\": 1\n  }\n}|\"\\u00e9\""
        );
    }

    #[test]
    fn raise_exception_is_an_error_with_the_message() {
        let t = "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}";
        let e = render_chat(t, &[ChatMessage::new("system", "x")], false, "", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("first must be user"), "{e}");
        assert!(render_chat("{% if %}", &[], false, "", "").is_err());
    }
}
