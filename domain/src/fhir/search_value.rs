//! The values a search parameter finds in a resource, in the shape search compares them:
//! normalized strings, tokens (`system|code`), references (`Type/id`), date ranges in
//! milliseconds, numbers with their significant-figure ranges, quantities, URIs.
//!
//! The search index (what it stores) and the query evaluator (what it compares) both read
//! values through this module, so the two can never disagree about, say, what range
//! `2024-03` covers or how `Müller` is folded.

use serde_json::Value;

use super::search_path::Found;

/// Folds a string for FHIR string search: lower case, accents removed, runs of whitespace
/// collapsed to one space, trimmed. `Müller  ` and `muller` fold to the same text.
/// The words of `text` for `_text`/`_content`: folded like strings (case, accents), split at
/// anything that is not a letter or digit, in order (repeats kept). Markup
/// (an XHTML narrative) is skipped: text between `<` and `>` is not words.
pub fn words(text: &str, into: &mut Vec<String>) {
    let mut visible = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => {
                in_tag = true;
                visible.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            _ => visible.push(c),
        }
    }
    for word in normalize(&visible).split(|c: char| !c.is_alphanumeric()) {
        if !word.is_empty() {
            into.push(word.to_owned());
        }
    }
}

pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        match fold_char(c) {
            Some(folded) => out.push_str(folded),
            None => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// Latin letters with diacritics, folded to ASCII. A table, because the crate keeps no Unicode
/// normalization dependency, and names and addresses in a US EHR are overwhelmingly Latin script.
fn fold_char(c: char) -> Option<&'static str> {
    if c.is_ascii() {
        return None;
    }
    Some(match c {
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'Ā' | 'ā' | 'Ă'
        | 'ă' | 'Ą' | 'ą' => "a",
        'Æ' | 'æ' => "ae",
        'Ç' | 'ç' | 'Ć' | 'ć' | 'Ĉ' | 'ĉ' | 'Ċ' | 'ċ' | 'Č' | 'č' => "c",
        'Ð' | 'ð' | 'Ď' | 'ď' | 'Đ' | 'đ' => "d",
        'È' | 'É' | 'Ê' | 'Ë' | 'è' | 'é' | 'ê' | 'ë' | 'Ē' | 'ē' | 'Ĕ' | 'ĕ' | 'Ė' | 'ė' | 'Ę'
        | 'ę' | 'Ě' | 'ě' => "e",
        'Ĝ' | 'ĝ' | 'Ğ' | 'ğ' | 'Ġ' | 'ġ' | 'Ģ' | 'ģ' => "g",
        'Ĥ' | 'ĥ' | 'Ħ' | 'ħ' => "h",
        'Ì' | 'Í' | 'Î' | 'Ï' | 'ì' | 'í' | 'î' | 'ï' | 'Ĩ' | 'ĩ' | 'Ī' | 'ī' | 'Ĭ' | 'ĭ' | 'Į'
        | 'į' | 'İ' | 'ı' => "i",
        'Ĵ' | 'ĵ' => "j",
        'Ķ' | 'ķ' => "k",
        'Ĺ' | 'ĺ' | 'Ļ' | 'ļ' | 'Ľ' | 'ľ' | 'Ŀ' | 'ŀ' | 'Ł' | 'ł' => "l",
        'Ñ' | 'ñ' | 'Ń' | 'ń' | 'Ņ' | 'ņ' | 'Ň' | 'ň' => "n",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ō' | 'ō' | 'Ŏ'
        | 'ŏ' | 'Ő' | 'ő' => "o",
        'Œ' | 'œ' => "oe",
        'Ŕ' | 'ŕ' | 'Ŗ' | 'ŗ' | 'Ř' | 'ř' => "r",
        'Ś' | 'ś' | 'Ŝ' | 'ŝ' | 'Ş' | 'ş' | 'Š' | 'š' => "s",
        'ß' => "ss",
        'Ţ' | 'ţ' | 'Ť' | 'ť' | 'Ŧ' | 'ŧ' => "t",
        'Þ' | 'þ' => "th",
        'Ù' | 'Ú' | 'Û' | 'Ü' | 'ù' | 'ú' | 'û' | 'ü' | 'Ũ' | 'ũ' | 'Ū' | 'ū' | 'Ŭ' | 'ŭ' | 'Ů'
        | 'ů' | 'Ű' | 'ű' | 'Ų' | 'ų' => "u",
        'Ŵ' | 'ŵ' => "w",
        'Ý' | 'ý' | 'ÿ' | 'Ŷ' | 'ŷ' | 'Ÿ' => "y",
        'Ź' | 'ź' | 'Ż' | 'ż' | 'Ž' | 'ž' => "z",
        _ => return None,
    })
}

/// The strings a string parameter finds: a plain string, or the parts of a HumanName or an
/// Address (each part is matched on its own, so `name=smi` finds family `Smith`).
pub fn strings(found: &Found<'_>) -> Vec<String> {
    let mut out = Vec::new();
    match found.value {
        Value::String(s) => out.push(s.clone()),
        Value::Object(obj) => {
            const PARTS: &[&str] = &[
                "family",
                "given",
                "prefix",
                "suffix",
                "text",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
                "display",
                "value",
            ];
            for part in PARTS {
                match obj.get(*part) {
                    Some(Value::String(s)) => out.push(s.clone()),
                    Some(Value::Array(items)) => {
                        out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    out
}

/// A coded value as token search sees it. `system` None: the value carries no system.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Token {
    pub system: Option<String>,
    pub code: Option<String>,
    /// Display or text, for `:text`.
    pub text: Option<String>,
    /// An Identifier's `type` codings, for `:of-type`.
    pub of_type: Vec<(Option<String>, String)>,
}

/// The tokens a token parameter finds in a Coding, CodeableConcept, Identifier, ContactPoint,
/// code, boolean, id or string.
pub fn tokens(found: &Found<'_>) -> Vec<Token> {
    let mut out = Vec::new();
    token_values(found.value, &mut out);
    out
}

fn token_values(value: &Value, out: &mut Vec<Token>) {
    match value {
        Value::String(s) => out.push(Token {
            code: Some(s.clone()),
            ..Token::default()
        }),
        Value::Bool(b) => out.push(Token {
            code: Some(b.to_string()),
            ..Token::default()
        }),
        Value::Number(n) => out.push(Token {
            code: Some(n.to_string()),
            ..Token::default()
        }),
        Value::Object(obj) => {
            let str_of = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
            if let Some(codings) = obj.get("coding").and_then(Value::as_array) {
                // CodeableConcept: each coding, and the text on its own for :text.
                for coding in codings {
                    token_values(coding, out);
                }
                if let Some(text) = str_of("text") {
                    out.push(Token {
                        text: Some(text),
                        ..Token::default()
                    });
                }
            } else if obj.contains_key("code")
                || (obj.contains_key("system") && !obj.contains_key("value"))
            {
                // Coding (or a Quantity used as a token).
                out.push(Token {
                    system: str_of("system"),
                    code: str_of("code"),
                    text: str_of("display"),
                    of_type: Vec::new(),
                });
            } else if obj.contains_key("value") {
                // Identifier or ContactPoint: system|value.
                let mut of_type = Vec::new();
                if let Some(codings) = obj
                    .get("type")
                    .and_then(|t| t.get("coding"))
                    .and_then(Value::as_array)
                {
                    for c in codings {
                        if let Some(code) = c.get("code").and_then(Value::as_str) {
                            let system = c.get("system").and_then(Value::as_str).map(str::to_owned);
                            of_type.push((system, code.to_owned()));
                        }
                    }
                }
                let text = obj
                    .get("type")
                    .and_then(|t| t.get("text"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                out.push(Token {
                    system: str_of("system"),
                    code: obj.get("value").and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    }),
                    text,
                    of_type,
                });
            }
        }
        _ => {}
    }
}

/// Where a reference points, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefTarget {
    /// A resource on this server: `Type/id` (relative, or absolute under this server's base).
    Local { resource_type: String, id: String },
    /// Anything else with a `reference`: an absolute URL elsewhere, or a canonical.
    Url(String),
}

/// A reference as reference search sees it: its target and its logical identifier, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReferenceValue {
    pub target: Option<RefTarget>,
    pub identifier: Option<Token>,
}

/// Parses a reference string: `Type/id`, `Type/id/_history/n`, `{base}/Type/id`, or an
/// external URL. `base` is this server's FHIR base URL (no trailing slash), or empty.
pub fn parse_reference(text: &str, base: &str) -> Option<RefTarget> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return None; // contained resources are not searchable targets
    }
    let local = if !base.is_empty() {
        text.strip_prefix(base)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(text)
    } else {
        text
    };
    let local = local.split("/_history/").next().unwrap_or(local);
    if !local.contains("://") && !local.starts_with("urn:") {
        let mut parts = local.split('/');
        if let (Some(t), Some(id), None) = (parts.next(), parts.next(), parts.next()) {
            if t.starts_with(|c: char| c.is_ascii_uppercase()) && !id.is_empty() {
                return Some(RefTarget::Local {
                    resource_type: t.to_owned(),
                    id: id.to_owned(),
                });
            }
        }
    }
    Some(RefTarget::Url(text.to_owned()))
}

/// The references a reference parameter finds (a Reference, or a canonical/uri string).
pub fn references(found: &Found<'_>, base: &str) -> Vec<ReferenceValue> {
    match found.value {
        Value::String(s) => vec![ReferenceValue {
            target: parse_reference(s, base),
            identifier: None,
        }],
        Value::Object(obj) => {
            let target = obj
                .get("reference")
                .and_then(Value::as_str)
                .and_then(|r| parse_reference(r, base));
            let identifier = obj.get("identifier").and_then(|i| {
                let mut v = Vec::new();
                token_values(i, &mut v);
                v.into_iter().next()
            });
            if target.is_none() && identifier.is_none() {
                return Vec::new();
            }
            vec![ReferenceValue { target, identifier }]
        }
        _ => Vec::new(),
    }
}

/// An inclusive range of instants, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub low: i64,
    pub high: i64,
}

/// Parses a FHIR date, dateTime or instant (and the search forms without seconds) into the
/// range its precision covers: `2024` is the whole year. Times without a zone are taken as UTC.
pub fn parse_date(text: &str) -> Option<DateRange> {
    let text = text.trim();
    let b = text.as_bytes();
    let digits = |s: &[u8]| -> Option<i64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    if b.len() < 4 {
        return None;
    }
    let year = digits(&b[0..4])?;
    if b.len() == 4 {
        let low = civil_ms(year, 1, 1, 0)?;
        return Some(DateRange {
            low,
            high: civil_ms(year + 1, 1, 1, 0)? - 1,
        });
    }
    if b.get(4) != Some(&b'-') || b.len() < 7 {
        return None;
    }
    let month = digits(&b[5..7])?;
    if !(1..=12).contains(&month) {
        return None;
    }
    if b.len() == 7 {
        let (ny, nm) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        return Some(DateRange {
            low: civil_ms(year, month, 1, 0)?,
            high: civil_ms(ny, nm, 1, 0)? - 1,
        });
    }
    if b.get(7) != Some(&b'-') || b.len() < 10 {
        return None;
    }
    let day = digits(&b[8..10])?;
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let day_start = civil_ms(year, month, day, 0)?;
    if b.len() == 10 {
        return Some(DateRange {
            low: day_start,
            high: day_start + 86_400_000 - 1,
        });
    }
    if b[10] != b'T' || b.len() < 16 || b[13] != b':' {
        return None;
    }
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    if hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &text[16..];
    let mut ms = day_start + (hour * 3600 + minute * 60) * 1000;
    let mut width = 60_000i64;
    if let Some(r) = rest.strip_prefix(':') {
        let sec = digits(r.as_bytes().get(0..2)?)?;
        if sec > 60 {
            return None;
        }
        ms += sec.min(59) * 1000;
        width = 1000;
        rest = &r[2..];
        if let Some(f) = rest.strip_prefix('.') {
            let n = f.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            let frac = &f[..n];
            let mut millis = 0i64;
            for (i, d) in frac.bytes().take(3).enumerate() {
                millis += i64::from(d - b'0') * 10i64.pow(2 - i as u32);
            }
            ms += millis;
            width = match n {
                1 => 100,
                2 => 10,
                _ => 1,
            };
            rest = &f[n..];
        }
    }
    let offset_ms = match rest {
        "" | "Z" => 0,
        zone => {
            let zb = zone.as_bytes();
            if zb.len() != 6 || zb[3] != b':' {
                return None;
            }
            let sign = match zb[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let h = digits(&zb[1..3])?;
            let m = digits(&zb[4..6])?;
            if h > 14 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60) * 1000
        }
    };
    let low = ms - offset_ms;
    Some(DateRange {
        low,
        high: low + width - 1,
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Milliseconds since the epoch of a civil date (Howard Hinnant's days_from_civil).
fn civil_ms(y: i64, m: i64, d: i64, ms_of_day: i64) -> Option<i64> {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days.checked_mul(86_400_000)?.checked_add(ms_of_day)
}

/// The date ranges a date parameter finds: a date/dateTime/instant, a Period (open ends are
/// unbounded), a Timing (its events and its bounds).
pub fn dates(found: &Found<'_>) -> Vec<DateRange> {
    let mut out = Vec::new();
    date_values(found.value, &mut out);
    out
}

fn date_values(value: &Value, out: &mut Vec<DateRange>) {
    match value {
        Value::String(s) => out.extend(parse_date(s)),
        Value::Object(obj) => {
            if obj.contains_key("start") || obj.contains_key("end") {
                let low = obj
                    .get("start")
                    .and_then(Value::as_str)
                    .and_then(parse_date)
                    .map_or(i64::MIN, |r| r.low);
                let high = obj
                    .get("end")
                    .and_then(Value::as_str)
                    .and_then(parse_date)
                    .map_or(i64::MAX, |r| r.high);
                out.push(DateRange { low, high });
            } else if obj.contains_key("event") || obj.contains_key("repeat") {
                if let Some(events) = obj.get("event").and_then(Value::as_array) {
                    for e in events {
                        date_values(e, out);
                    }
                }
                if let Some(bounds) = obj.get("repeat").and_then(|r| r.get("boundsPeriod")) {
                    date_values(bounds, out);
                }
            }
        }
        _ => {}
    }
}

/// A decimal with the range its significant figures imply: `100` is [99.5, 100.5),
/// `1.50` is [1.495, 1.505).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberRange {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// Parses a FHIR decimal (also `1e2` exponent forms, which search allows).
pub fn parse_number(text: &str) -> Option<NumberRange> {
    let text = text.trim();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let unsigned = mantissa.trim_start_matches(['+', '-']);
    if unsigned.is_empty()
        || !unsigned.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || unsigned.bytes().filter(|b| *b == b'.').count() > 1
        || !unsigned.bytes().any(|b| b.is_ascii_digit())
    {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    let decimals = unsigned.split_once('.').map_or(0, |(_, f)| f.len() as i32);
    let half = 0.5 * 10f64.powi(exponent - decimals);
    Some(NumberRange {
        value,
        low: value - half,
        high: value + half,
    })
}

/// The numbers a number parameter finds.
pub fn numbers(found: &Found<'_>) -> Vec<NumberRange> {
    match found.value {
        Value::Number(n) => parse_number(&n.to_string()).into_iter().collect(),
        Value::String(s) => parse_number(s).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// A Quantity as quantity search sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantityValue {
    pub number: NumberRange,
    pub system: Option<String>,
    pub code: Option<String>,
    pub unit: Option<String>,
}

/// The quantities a quantity parameter finds (Quantity, Age, Duration, Money-like values, and
/// the low/high of a Range).
pub fn quantities(found: &Found<'_>) -> Vec<QuantityValue> {
    let mut out = Vec::new();
    quantity_values(found.value, &mut out);
    out
}

fn quantity_values(value: &Value, out: &mut Vec<QuantityValue>) {
    let Value::Object(obj) = value else {
        return;
    };
    if let Some(n) = obj.get("value") {
        let number = match n {
            Value::Number(n) => parse_number(&n.to_string()),
            _ => None,
        };
        if let Some(number) = number {
            let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
            out.push(QuantityValue {
                number,
                system: s("system"),
                code: s("code").or_else(|| s("currency")),
                unit: s("unit"),
            });
        }
    } else {
        for k in ["low", "high"] {
            if let Some(v) = obj.get(k) {
                quantity_values(v, out);
            }
        }
    }
}

/// The URIs a uri parameter finds.
pub fn uris(found: &Found<'_>) -> Vec<String> {
    match found.value {
        Value::String(s) => vec![s.clone()],
        Value::Object(obj) => obj
            .get("reference")
            .or_else(|| obj.get("url"))
            .and_then(Value::as_str)
            .map(|s| vec![s.to_owned()])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn found(v: &Value) -> Found<'_> {
        Found {
            value: v,
            choice_type: None,
        }
    }

    #[test]
    fn strings_fold_case_accents_and_spaces() {
        assert_eq!(normalize("  Müller   Ñandú "), "muller nandu");
        assert_eq!(normalize("O'BRIEN"), "o'brien");
        let name = json!({"family": "Smith", "given": ["Ann", "Marie"], "text": "Ann Smith"});
        assert_eq!(
            strings(&found(&name)),
            vec!["Smith", "Ann", "Marie", "Ann Smith"]
        );
    }

    #[test]
    fn dates_cover_their_precision() {
        let y = parse_date("2024").unwrap();
        assert_eq!(y.low, 1_704_067_200_000);
        assert_eq!(y.high, 1_735_689_600_000 - 1);
        let m = parse_date("2024-02").unwrap();
        assert_eq!(m.high - m.low + 1, 29 * 86_400_000);
        let d = parse_date("2024-03-01").unwrap();
        assert_eq!(d.high - d.low + 1, 86_400_000);
        let t = parse_date("2024-03-01T10:00:00+02:00").unwrap();
        assert_eq!(t.low, parse_date("2024-03-01T08:00:00Z").unwrap().low);
        assert_eq!(t.high - t.low, 999);
        let ms = parse_date("2024-03-01T10:00:00.123Z").unwrap();
        assert_eq!(ms.low, ms.high);
        assert!(parse_date("2024-03-01T10:00").is_some());
        for bad in [
            "notadate",
            "2024-13",
            "2024-02-30",
            "2024-01-01T25:00",
            "20",
            "",
        ] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn periods_and_timings_are_ranges() {
        let p = json!({"start": "2024-01-01"});
        assert_eq!(dates(&found(&p))[0].high, i64::MAX);
        let t = json!({"event": ["2024-01-01", "2024-02-01"]});
        assert_eq!(dates(&found(&t)).len(), 2);
    }

    #[test]
    fn numbers_carry_significant_figure_ranges() {
        let n = parse_number("100").unwrap();
        assert_eq!((n.low, n.high), (99.5, 100.5));
        let n = parse_number("1.50").unwrap();
        assert!((n.low - 1.495).abs() < 1e-12 && (n.high - 1.505).abs() < 1e-12);
        let n = parse_number("1e2").unwrap();
        assert_eq!(n.value, 100.0);
        for bad in ["", "abc", "1.2.3", "-", "NaN", "inf"] {
            assert!(parse_number(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn references_normalize_to_type_and_id() {
        let base = "https://ehr.example/fhir/r4";
        assert_eq!(
            parse_reference("Patient/1/_history/2", base),
            Some(RefTarget::Local {
                resource_type: "Patient".into(),
                id: "1".into()
            })
        );
        assert_eq!(
            parse_reference("https://ehr.example/fhir/r4/Patient/1", base),
            parse_reference("Patient/1", base)
        );
        assert_eq!(
            parse_reference("https://other.example/Patient/1", base),
            Some(RefTarget::Url("https://other.example/Patient/1".into()))
        );
    }

    #[test]
    fn tokens_from_codeable_concepts_and_identifiers() {
        let cc = json!({"coding": [{"system": "s", "code": "C", "display": "Disp"}], "text": "T"});
        let t = tokens(&found(&cc));
        assert_eq!(t[0].system.as_deref(), Some("s"));
        assert_eq!(t[0].code.as_deref(), Some("C"));
        assert_eq!(t[1].text.as_deref(), Some("T"));
        let id = json!({"system": "urn:mrn", "value": "123",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}});
        let t = tokens(&found(&id));
        assert_eq!(t[0].code.as_deref(), Some("123"));
        assert_eq!(t[0].of_type[0].1, "MR");
    }
}
