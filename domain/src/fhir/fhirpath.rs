//! A small FHIRPath evaluator for the invariants in the generated tables (`obs-6`, `per-1`,
//! `us-core-2`...). It covers the operators and functions those expressions use; anything else
//! (`resolve()`, `memberOf()`, `conformsTo()`...) is an [`EvalError`], and the validator then
//! skips that invariant rather than guess. Expressions come from the tables, never from clients.

use std::collections::HashSet;

use serde_json::Value;

/// Why an expression could not be parsed or evaluated here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(String);

fn err<T>(message: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError(message.into()))
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(String),
    Var(String),
    Op(&'static str),
}

const OPS: [&str; 19] = [
    "<=", ">=", "!=", "!~", "(", ")", "[", "]", ",", ".", "|", "=", "~", "<", ">", "+", "-", "&",
    "*",
];

fn lex(text: &str) -> Result<Vec<Token>, EvalError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                    s.push(match chars[i] {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                } else {
                    s.push(chars[i]);
                }
                i += 1;
            }
            if i >= chars.len() {
                return err("unterminated string");
            }
            i += 1;
            tokens.push(Token::Str(s));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                // A dot followed by a letter is an invocation, not a decimal point.
                if chars[i] == '.' && !chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                    break;
                }
                i += 1;
            }
            tokens.push(Token::Num(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' || c == '$' || c == '%' || c == '`' {
            let start = i;
            if c == '`' {
                i += 1;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                let name: String = chars[start + 1..i.min(chars.len())].iter().collect();
                i += 1;
                tokens.push(Token::Ident(name));
                continue;
            }
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if let Some(var) = word.strip_prefix('%') {
                tokens.push(Token::Var(var.to_owned()));
            } else {
                tokens.push(Token::Ident(word));
            }
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                return err(format!("unexpected character '{c}'"));
            };
            i += op.chars().count();
            tokens.push(Token::Op(op));
        }
    }
    Ok(tokens)
}

// ---------------------------------------------------------------------------------------------
// Parser (precedence climbing, FHIRPath N1 precedence)

#[derive(Debug, Clone)]
enum Expr {
    This,
    Var(String),
    Str(String),
    Num(String),
    Bool(bool),
    /// A name at the start of a path (type name or element of the focus).
    Name(String),
    /// `focus.name`
    Member(Box<Expr>, String),
    /// `focus.fn(args)`; a bare `fn(args)` has focus `This`.
    Call(Box<Expr>, String, Vec<Expr>),
    Index(Box<Expr>, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
    Is(Box<Expr>, String),
    As(Box<Expr>, String),
    Neg(Box<Expr>),
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

fn precedence(token: &Token) -> Option<(u8, &'static str)> {
    Some(match token {
        Token::Op(op @ ("*" | "/")) => (10, op),
        Token::Ident(w) if w == "div" => (10, "div"),
        Token::Ident(w) if w == "mod" => (10, "mod"),
        Token::Op(op @ ("+" | "-" | "&")) => (9, op),
        Token::Ident(w) if w == "is" => (8, "is"),
        Token::Ident(w) if w == "as" => (8, "as"),
        Token::Op("|") => (7, "|"),
        Token::Op(op @ ("<" | ">" | "<=" | ">=")) => (6, op),
        Token::Op(op @ ("=" | "~" | "!=" | "!~")) => (5, op),
        Token::Ident(w) if w == "in" => (4, "in"),
        Token::Ident(w) if w == "contains" => (4, "contains"),
        Token::Ident(w) if w == "and" => (3, "and"),
        Token::Ident(w) if w == "or" => (2, "or"),
        Token::Ident(w) if w == "xor" => (2, "xor"),
        Token::Ident(w) if w == "implies" => (1, "implies"),
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, op: &str) -> Result<(), EvalError> {
        match self.next() {
            Some(Token::Op(o)) if o == op => Ok(()),
            other => err(format!("expected '{op}', found {other:?}")),
        }
    }

    fn expression(&mut self, min: u8) -> Result<Expr, EvalError> {
        let mut left = self.unary()?;
        while let Some((prec, op)) = self.peek().and_then(precedence) {
            if prec < min {
                break;
            }
            self.pos += 1;
            left = match op {
                "is" | "as" => {
                    let name = self.type_name()?;
                    if op == "is" {
                        Expr::Is(Box::new(left), name)
                    } else {
                        Expr::As(Box::new(left), name)
                    }
                }
                _ => {
                    let right = self.expression(prec + 1)?;
                    Expr::Binary(op, Box::new(left), Box::new(right))
                }
            };
        }
        Ok(left)
    }

    fn type_name(&mut self) -> Result<String, EvalError> {
        let Some(Token::Ident(mut name)) = self.next() else {
            return err("expected a type name");
        };
        // `FHIR.Quantity` / `System.String`
        if self.peek() == Some(&Token::Op(".")) {
            self.pos += 1;
            if let Some(Token::Ident(n)) = self.next() {
                name = n;
            }
        }
        Ok(name)
    }

    fn unary(&mut self) -> Result<Expr, EvalError> {
        if self.peek() == Some(&Token::Op("-")) {
            self.pos += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        let mut e = self.primary()?;
        loop {
            match self.peek() {
                Some(Token::Op(".")) => {
                    self.pos += 1;
                    let Some(Token::Ident(name)) = self.next() else {
                        return err("expected a name after '.'");
                    };
                    if self.peek() == Some(&Token::Op("(")) {
                        let args = self.arguments()?;
                        e = Expr::Call(Box::new(e), name, args);
                    } else {
                        e = Expr::Member(Box::new(e), name);
                    }
                }
                Some(Token::Op("[")) => {
                    self.pos += 1;
                    let index = self.expression(0)?;
                    self.expect("]")?;
                    e = Expr::Index(Box::new(e), Box::new(index));
                }
                _ => return Ok(e),
            }
        }
    }

    fn arguments(&mut self) -> Result<Vec<Expr>, EvalError> {
        self.expect("(")?;
        let mut args = Vec::new();
        if self.peek() == Some(&Token::Op(")")) {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            args.push(self.expression(0)?);
            match self.next() {
                Some(Token::Op(",")) => continue,
                Some(Token::Op(")")) => return Ok(args),
                other => return err(format!("expected ',' or ')', found {other:?}")),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, EvalError> {
        match self.next() {
            Some(Token::Str(s)) => Ok(Expr::Str(s)),
            Some(Token::Num(n)) => Ok(Expr::Num(n)),
            Some(Token::Var(v)) => Ok(Expr::Var(v)),
            Some(Token::Op("(")) => {
                let e = self.expression(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Token::Op("{")) => err("collection literals are not supported"),
            Some(Token::Ident(w)) => match w.as_str() {
                "true" => Ok(Expr::Bool(true)),
                "false" => Ok(Expr::Bool(false)),
                "$this" => Ok(Expr::This),
                _ if self.peek() == Some(&Token::Op("(")) => {
                    let args = self.arguments()?;
                    Ok(Expr::Call(Box::new(Expr::This), w, args))
                }
                _ => Ok(Expr::Name(w)),
            },
            other => err(format!("unexpected {other:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values

/// One item of a FHIRPath collection.
#[derive(Debug, Clone)]
enum Item<'v> {
    /// A node of the resource, with the choice type its JSON key named (`DateTime`), if any.
    Node(&'v Value, Option<&'v str>),
    Bool(bool),
    Num(f64),
    Str(String),
}

type Collection<'v> = Vec<Item<'v>>;

impl Item<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Item::Node(Value::String(s), _) => Some(s),
            Item::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_num(&self) -> Option<f64> {
        match self {
            Item::Node(Value::Number(n), _) => n.to_string().parse().ok(),
            Item::Num(n) => Some(*n),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Item::Node(Value::Bool(b), _) | Item::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A comparable key for equality and distinctness.
    fn key(&self) -> String {
        match self {
            Item::Node(v, _) => match v {
                Value::String(s) => format!("s:{s}"),
                Value::Number(n) => {
                    format!("n:{}", n.to_string().parse::<f64>().unwrap_or(f64::NAN))
                }
                Value::Bool(b) => format!("b:{b}"),
                other => format!("j:{other}"),
            },
            Item::Bool(b) => format!("b:{b}"),
            Item::Num(n) => format!("n:{n}"),
            Item::Str(s) => format!("s:{s}"),
        }
    }
}

fn boolean<'v>(b: bool) -> Collection<'v> {
    vec![Item::Bool(b)]
}

/// FHIRPath singleton evaluation of a collection as a boolean: empty stays empty (None).
fn truth(c: &Collection<'_>) -> Result<Option<bool>, EvalError> {
    match c.as_slice() {
        [] => Ok(None),
        [item] => Ok(Some(item.as_bool().unwrap_or(true))),
        _ => err("a boolean was expected, found several items"),
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct FhirPath {
    expr: Expr,
}

impl FhirPath {
    pub fn parse(text: &str) -> Result<FhirPath, EvalError> {
        let mut parser = Parser {
            tokens: lex(text)?,
            pos: 0,
        };
        let expr = parser.expression(0)?;
        if parser.pos != parser.tokens.len() {
            return err("trailing input");
        }
        Ok(FhirPath { expr })
    }

    /// Evaluates as an invariant: Some(false) when violated; Some(true) or None (empty) when not.
    pub fn check(
        &self,
        focus: &Value,
        choice_type: Option<&str>,
        resource: &Value,
        root: &Value,
    ) -> Result<Option<bool>, EvalError> {
        let env = Env { resource, root };
        let this = vec![Item::Node(focus, choice_type)];
        let result = env.eval(&self.expr, &this, &this)?;
        truth(&result)
    }
}

struct Env<'v> {
    resource: &'v Value,
    root: &'v Value,
}

/// The children named `name` of the items (choice-aware), arrays flattened.
fn children<'v>(input: &[Item<'v>], name: &str) -> Collection<'v> {
    let mut out = Vec::new();
    for item in input {
        let Item::Node(Value::Object(obj), _) = item else {
            continue;
        };
        for (key, value) in obj {
            let choice = if key == name {
                None
            } else {
                match key.strip_prefix(name) {
                    Some(rest) if rest.starts_with(|c: char| c.is_ascii_uppercase()) => Some(rest),
                    _ => continue,
                }
            };
            match value {
                Value::Array(items) => out.extend(
                    items
                        .iter()
                        .filter(|v| !v.is_null())
                        .map(|v| Item::Node(v, choice)),
                ),
                Value::Null => {}
                v => out.push(Item::Node(v, choice)),
            }
        }
    }
    out
}

fn type_matches(item: &Item<'_>, t: &str) -> bool {
    let lower = t.to_ascii_lowercase();
    match item {
        Item::Node(v, Some(choice)) => {
            choice.eq_ignore_ascii_case(t)
                || (lower == "string" && v.is_string() && choice.eq_ignore_ascii_case("string"))
        }
        Item::Node(Value::Object(o), None) => {
            o.get("resourceType").and_then(Value::as_str) == Some(t)
        }
        Item::Node(Value::String(_), None) | Item::Str(_) => lower == "string",
        Item::Node(Value::Bool(_), None) | Item::Bool(_) => lower == "boolean",
        Item::Node(Value::Number(_), None) | Item::Num(_) => {
            lower == "decimal" || lower == "integer"
        }
        _ => false,
    }
}

impl<'v> Env<'v> {
    fn eval(
        &self,
        expr: &Expr,
        focus: &Collection<'v>,
        this: &Collection<'v>,
    ) -> Result<Collection<'v>, EvalError> {
        Ok(match expr {
            Expr::This => this.clone(),
            Expr::Var(v) => match v.as_str() {
                "resource" => vec![Item::Node(self.resource, None)],
                "rootResource" => vec![Item::Node(self.root, None)],
                "ucum" => vec![Item::Str("http://unitsofmeasure.org".into())],
                "sct" => vec![Item::Str("http://snomed.info/sct".into())],
                "loinc" => vec![Item::Str("http://loinc.org".into())],
                "context" => this.clone(),
                other => return err(format!("unknown variable %{other}")),
            },
            Expr::Str(s) => vec![Item::Str(s.clone())],
            Expr::Num(n) => vec![Item::Num(
                n.parse()
                    .map_err(|_| EvalError(format!("bad number {n}")))?,
            )],
            Expr::Bool(b) => boolean(*b),
            Expr::Name(name) => {
                // A leading type name (`Observation.code`) selects the focus when it matches.
                let is_type = name.starts_with(|c: char| c.is_ascii_uppercase());
                if is_type && focus.iter().all(|i| type_matches(i, name)) && !focus.is_empty() {
                    focus.clone()
                } else {
                    children(focus, name)
                }
            }
            Expr::Member(inner, name) => {
                let base = self.eval(inner, focus, this)?;
                children(&base, name)
            }
            Expr::Index(inner, index) => {
                let base = self.eval(inner, focus, this)?;
                let i = self.eval(index, this, this)?;
                let i = i.first().and_then(Item::as_num).unwrap_or(-1.0);
                if i >= 0.0 {
                    base.into_iter().nth(i as usize).into_iter().collect()
                } else {
                    Vec::new()
                }
            }
            Expr::Is(inner, t) => {
                let base = self.eval(inner, focus, this)?;
                match base.as_slice() {
                    [] => Vec::new(),
                    [item] => boolean(type_matches(item, t)),
                    _ => return err("'is' on several items"),
                }
            }
            Expr::As(inner, t) => {
                let base = self.eval(inner, focus, this)?;
                base.into_iter().filter(|i| type_matches(i, t)).collect()
            }
            Expr::Neg(inner) => {
                let base = self.eval(inner, focus, this)?;
                match base.first().and_then(Item::as_num) {
                    Some(n) => vec![Item::Num(-n)],
                    None => Vec::new(),
                }
            }
            Expr::Binary(op, l, r) => self.binary(op, l, r, focus, this)?,
            Expr::Call(inner, name, args) => {
                let base = self.eval(inner, focus, this)?;
                self.call(name, base, args, this)?
            }
        })
    }

    fn binary(
        &self,
        op: &str,
        l: &Expr,
        r: &Expr,
        focus: &Collection<'v>,
        this: &Collection<'v>,
    ) -> Result<Collection<'v>, EvalError> {
        let left = self.eval(l, focus, this)?;
        let right = self.eval(r, focus, this)?;
        Ok(match op {
            "and" | "or" | "xor" | "implies" => {
                let (a, b) = (truth(&left)?, truth(&right)?);
                let v = match op {
                    "and" => match (a, b) {
                        (Some(false), _) | (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    },
                    "or" => match (a, b) {
                        (Some(true), _) | (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    },
                    "xor" => match (a, b) {
                        (Some(x), Some(y)) => Some(x != y),
                        _ => None,
                    },
                    _ => match (a, b) {
                        (Some(false), _) | (_, Some(true)) => Some(true),
                        (Some(true), Some(false)) => Some(false),
                        _ => None,
                    },
                };
                v.map(boolean).unwrap_or_default()
            }
            "|" => {
                let mut seen = HashSet::new();
                left.into_iter()
                    .chain(right)
                    .filter(|i| seen.insert(i.key()))
                    .collect()
            }
            "=" | "!=" | "~" | "!~" => {
                if left.is_empty() || right.is_empty() {
                    return Ok(Vec::new());
                }
                let ci = op.contains('~');
                let norm = |i: &Item<'_>| {
                    let k = i.key();
                    if ci {
                        k.to_lowercase()
                    } else {
                        k
                    }
                };
                let equal = left.len() == right.len()
                    && left.iter().zip(&right).all(|(a, b)| norm(a) == norm(b));
                boolean(if op.starts_with('!') { !equal } else { equal })
            }
            "<" | ">" | "<=" | ">=" => {
                let (Some(a), Some(b)) = (left.first(), right.first()) else {
                    return Ok(Vec::new());
                };
                let ord = match (a.as_num(), b.as_num()) {
                    (Some(x), Some(y)) => x.partial_cmp(&y),
                    _ => match (a.as_str(), b.as_str()) {
                        (Some(x), Some(y)) if x.len() == y.len() => Some(x.cmp(y)),
                        // Dates of different precision: not comparable here.
                        _ => return err("incomparable operands"),
                    },
                };
                let Some(ord) = ord else {
                    return Ok(Vec::new());
                };
                boolean(match op {
                    "<" => ord.is_lt(),
                    ">" => ord.is_gt(),
                    "<=" => ord.is_le(),
                    _ => ord.is_ge(),
                })
            }
            "in" | "contains" => {
                let (item, list) = if op == "in" {
                    (&left, &right)
                } else {
                    (&right, &left)
                };
                match item.as_slice() {
                    [] => Vec::new(),
                    [one] => boolean(list.iter().any(|x| x.key() == one.key())),
                    _ => return err("membership of several items"),
                }
            }
            "&" => {
                let s = |c: &Collection<'_>| c.first().and_then(|i| i.as_str().map(str::to_owned));
                vec![Item::Str(format!(
                    "{}{}",
                    s(&left).unwrap_or_default(),
                    s(&right).unwrap_or_default()
                ))]
            }
            "+" | "-" | "*" | "/" | "div" | "mod" => {
                let (Some(a), Some(b)) = (
                    left.first().and_then(Item::as_num),
                    right.first().and_then(Item::as_num),
                ) else {
                    return Ok(Vec::new());
                };
                vec![Item::Num(match op {
                    "+" => a + b,
                    "-" => a - b,
                    "*" => a * b,
                    "/" => a / b,
                    "div" => (a / b).trunc(),
                    _ => a % b,
                })]
            }
            other => return err(format!("operator {other} is not supported")),
        })
    }

    fn call(
        &self,
        name: &str,
        base: Collection<'v>,
        args: &[Expr],
        this: &Collection<'v>,
    ) -> Result<Collection<'v>, EvalError> {
        // Arguments evaluated against `this` (the invariant's context), e.g. `startsWith('#')`.
        let arg = |i: usize| -> Result<Collection<'v>, EvalError> {
            match args.get(i) {
                Some(a) => self.eval(a, this, this),
                None => err(format!("{name}() needs an argument")),
            }
        };
        // Per-item criteria (`where`, `all`, `exists(criteria)`, `select`): $this is the item.
        let per_item = |item: &Item<'v>, e: &Expr| -> Result<Collection<'v>, EvalError> {
            let one = vec![item.clone()];
            self.eval(e, &one, &one)
        };
        Ok(match (name, args.len()) {
            ("empty", 0) => boolean(base.is_empty()),
            ("exists", 0) => boolean(!base.is_empty()),
            ("exists", 1) => {
                let mut any = false;
                for item in &base {
                    if truth(&per_item(item, &args[0])?)? == Some(true) {
                        any = true;
                        break;
                    }
                }
                boolean(any)
            }
            ("not", 0) => match truth(&base)? {
                Some(b) => boolean(!b),
                None => Vec::new(),
            },
            ("count", 0) => vec![Item::Num(base.len() as f64)],
            ("hasValue", 0) => boolean(matches!(
                base.as_slice(),
                [Item::Node(
                    Value::String(_) | Value::Number(_) | Value::Bool(_),
                    _
                )]
            )),
            ("where", 1) => {
                let mut out = Vec::new();
                for item in base {
                    if truth(&per_item(&item, &args[0])?)? == Some(true) {
                        out.push(item);
                    }
                }
                out
            }
            ("select", 1) => {
                let mut out = Vec::new();
                for item in &base {
                    out.extend(per_item(item, &args[0])?);
                }
                out
            }
            ("all", 1) => {
                for item in &base {
                    if truth(&per_item(item, &args[0])?)? != Some(true) {
                        return Ok(boolean(false));
                    }
                }
                boolean(true)
            }
            ("allFalse", 0) => boolean(base.iter().all(|i| i.as_bool() == Some(false))),
            ("allTrue", 0) => boolean(base.iter().all(|i| i.as_bool() == Some(true))),
            ("anyTrue", 0) => boolean(base.iter().any(|i| i.as_bool() == Some(true))),
            ("isDistinct", 0) => {
                let mut seen = HashSet::new();
                boolean(base.iter().all(|i| seen.insert(i.key())))
            }
            ("distinct", 0) => {
                let mut seen = HashSet::new();
                base.into_iter().filter(|i| seen.insert(i.key())).collect()
            }
            ("first", 0) => base.into_iter().take(1).collect(),
            ("last", 0) => base.into_iter().last().into_iter().collect(),
            ("ofType", 1) | ("as", 1) => {
                let Some(Expr::Name(t)) = args.first() else {
                    return err("ofType() needs a type name");
                };
                base.into_iter().filter(|i| type_matches(i, t)).collect()
            }
            ("is", 1) => {
                let Some(Expr::Name(t)) = args.first() else {
                    return err("is() needs a type name");
                };
                match base.as_slice() {
                    [] => Vec::new(),
                    [item] => boolean(type_matches(item, t)),
                    _ => return err("is() on several items"),
                }
            }
            ("trace", _) => base,
            ("htmlChecks", 0) => boolean(true),
            ("iif", 2) | ("iif", 3) => {
                let cond = self.eval(&args[0], &base, &base)?;
                if truth(&cond)? == Some(true) {
                    self.eval(&args[1], &base, &base)?
                } else if let Some(otherwise) = args.get(2) {
                    self.eval(otherwise, &base, &base)?
                } else {
                    Vec::new()
                }
            }
            ("startsWith", 1) | ("endsWith", 1) | ("contains", 1) | ("matches", 1) => {
                let (Some(s), Some(p)) = (
                    base.first().and_then(|i| i.as_str().map(str::to_owned)),
                    arg(0)?.first().and_then(|i| i.as_str().map(str::to_owned)),
                ) else {
                    return Ok(Vec::new());
                };
                boolean(match name {
                    "startsWith" => s.starts_with(&p),
                    "endsWith" => s.ends_with(&p),
                    "contains" => s.contains(&p),
                    _ => regex::Regex::new(&p)
                        .map_err(|e| EvalError(format!("bad regex: {e}")))?
                        .is_match(&s),
                })
            }
            ("length", 0) => match base.first().and_then(Item::as_str) {
                Some(s) => vec![Item::Num(s.chars().count() as f64)],
                None => Vec::new(),
            },
            ("toString", 0) => match base.first() {
                Some(Item::Node(Value::String(s), _)) | Some(Item::Str(s)) => {
                    vec![Item::Str(s.clone())]
                }
                Some(Item::Node(Value::Number(n), _)) => vec![Item::Str(n.to_string())],
                Some(Item::Node(Value::Bool(b), _)) | Some(Item::Bool(b)) => {
                    vec![Item::Str(b.to_string())]
                }
                Some(Item::Num(n)) => vec![Item::Str(n.to_string())],
                _ => Vec::new(),
            },
            ("toInteger", 0) => match base.first() {
                Some(i) => match i
                    .as_num()
                    .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
                {
                    Some(n) if n.fract() == 0.0 => vec![Item::Num(n)],
                    _ => Vec::new(),
                },
                None => Vec::new(),
            },
            ("substring", 1) | ("substring", 2) => {
                let Some(s) = base.first().and_then(|i| i.as_str().map(str::to_owned)) else {
                    return Ok(Vec::new());
                };
                let start = arg(0)?.first().and_then(Item::as_num).unwrap_or(0.0) as usize;
                let chars: Vec<char> = s.chars().collect();
                if start >= chars.len() {
                    return Ok(Vec::new());
                }
                let len = match args.get(1) {
                    Some(_) => arg(1)?.first().and_then(Item::as_num).unwrap_or(0.0) as usize,
                    None => chars.len() - start,
                };
                let end = start.saturating_add(len).min(chars.len());
                vec![Item::Str(chars[start..end].iter().collect())]
            }
            ("intersect", 1) => {
                let other: HashSet<String> = arg(0)?.iter().map(Item::key).collect();
                base.into_iter()
                    .filter(|i| other.contains(&i.key()))
                    .collect()
            }
            ("extension", 1) => {
                let url = arg(0)?.first().and_then(|i| i.as_str().map(str::to_owned));
                children(&base, "extension")
                    .into_iter()
                    .filter(|e| match e {
                        Item::Node(v, _) => v.get("url").and_then(Value::as_str) == url.as_deref(),
                        _ => false,
                    })
                    .collect()
            }
            ("children", 0) => {
                let mut out = Vec::new();
                for item in &base {
                    if let Item::Node(Value::Object(obj), _) = item {
                        for v in obj.values() {
                            match v {
                                Value::Array(a) => {
                                    out.extend(a.iter().map(|x| Item::Node(x, None)))
                                }
                                v => out.push(Item::Node(v, None)),
                            }
                        }
                    }
                }
                out
            }
            ("descendants", 0) => {
                let mut out = Vec::new();
                for item in &base {
                    if let Item::Node(v, _) = item {
                        descendants(v, &mut out, 0);
                    }
                }
                out
            }
            (other, n) => return err(format!("{other}() with {n} argument(s) is not supported")),
        })
    }
}

/// Every node below `value` (FHIRPath `descendants()`), bounded like the structural walk.
fn descendants<'v>(value: &'v Value, out: &mut Collection<'v>, depth: usize) {
    if depth > 64 {
        return;
    }
    let children: Box<dyn Iterator<Item = &'v Value>> = match value {
        Value::Object(obj) => Box::new(obj.values()),
        Value::Array(items) => Box::new(items.iter()),
        _ => return,
    };
    for child in children {
        match child {
            Value::Array(items) => {
                for item in items {
                    out.push(Item::Node(item, None));
                    descendants(item, out, depth + 1);
                }
            }
            other => {
                out.push(Item::Node(other, None));
                descendants(other, out, depth + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(expr: &str, focus: &Value) -> Option<bool> {
        FhirPath::parse(expr)
            .expect("parses")
            .check(focus, None, focus, focus)
            .expect("evaluates")
    }

    #[test]
    fn invariants_of_the_kind_the_tables_hold() {
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
        let us_core_2 =
            "(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())";
        assert_eq!(check(us_core_2, &obs), Some(false));
        let with_value = json!({"resourceType": "Observation", "valueString": "x"});
        assert_eq!(check(us_core_2, &with_value), Some(true));
        let per_1 = "start.hasValue().not() or end.hasValue().not() or (start <= end)";
        assert_eq!(
            check(per_1, &json!({"start": "2020-01-01", "end": "2021-01-01"})),
            Some(true)
        );
        assert_eq!(
            check(per_1, &json!({"start": "2022-01-01", "end": "2021-01-01"})),
            Some(false)
        );
        assert_eq!(
            check(
                "name.exists() or relationship.exists()",
                &json!({"id": "x"})
            ),
            Some(false)
        );
        let npi = "value.matches('^[0-9]{10}$')";
        assert_eq!(check(npi, &json!({"value": "1234567890"})), Some(true));
        assert_eq!(check(npi, &json!({"value": "12345"})), Some(false));
        assert_eq!(
            check(
                "telecom.where(system = 'phone').count() = 1",
                &json!({"telecom": [{"system": "phone"}]})
            ),
            Some(true)
        );
        assert_eq!(
            check("(1 + 2) = 3 and 'a' & 'b' = 'ab'", &json!({})),
            Some(true)
        );
        let que_2 = "descendants().linkId.isDistinct()";
        let q = json!({"item": [{"linkId": "1", "item": [{"linkId": "1.1"}]}, {"linkId": "2"}]});
        assert_eq!(check(que_2, &q), Some(true));
        let dup = json!({"item": [{"linkId": "1", "item": [{"linkId": "1"}]}]});
        assert_eq!(check(que_2, &dup), Some(false));
    }

    #[test]
    fn unsupported_functions_are_errors_not_verdicts() {
        let f = FhirPath::parse("subject.resolve().exists()").expect("parses");
        let v = json!({"subject": {"reference": "Patient/1"}});
        assert!(f.check(&v, None, &v, &v).is_err());
        assert!(FhirPath::parse("a.b(").is_err());
    }
}
