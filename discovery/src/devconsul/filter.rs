//! A subset of Consul's `?filter=` language (go-bexpr), evaluated on an entry's JSON.
//!
//! Supported: `Selector == "v"`, `!=`, `contains`, `not contains`, `"v" in Selector`,
//! `"v" not in Selector`, `Selector is empty`, `Selector is not empty`, combined with `and`,
//! `or`, `not` and parentheses. Values are `"double"`- or `` `backtick` ``-quoted, or bare words
//! (numbers, `true`). Selectors are dotted paths into the JSON (`Service.Meta.version`,
//! `Service.Tags`, `Node.Node`), matched case-insensitively; a missing field equals nothing.
//! Not supported (400): `matches` (regular expressions).

use serde_json::Value;

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Match {
        selector: Vec<String>,
        op: Op,
        value: String,
    },
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Equal,
    NotEqual,
    Contains,
    NotContains,
    IsEmpty,
    IsNotEmpty,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    LParen,
    RParen,
    Eq,
    Ne,
}

// === impl Filter ===

impl Filter {
    /// Parses a filter; the error text follows Consul's prefix.
    pub(crate) fn parse(src: &str) -> Result<Self, String> {
        let tokens = tokenize(src)?;
        let mut p = Parser { tokens, pos: 0 };
        let f = p.or()?;
        if p.pos != p.tokens.len() {
            return Err(format!(
                "unexpected {:?} at token {}",
                p.tokens[p.pos],
                p.pos + 1
            ));
        }
        Ok(f)
    }

    /// Whether `entry` passes.
    pub(crate) fn matches(&self, entry: &Value) -> bool {
        match self {
            Self::And(a, b) => a.matches(entry) && b.matches(entry),
            Self::Or(a, b) => a.matches(entry) || b.matches(entry),
            Self::Not(a) => !a.matches(entry),
            Self::Match {
                selector,
                op,
                value,
            } => {
                let field = resolve(entry, selector);
                match op {
                    Op::Equal => equals(field, value),
                    Op::NotEqual => !equals(field, value),
                    Op::Contains => contains(field, value),
                    Op::NotContains => !contains(field, value),
                    Op::IsEmpty => is_empty(field),
                    Op::IsNotEmpty => !is_empty(field),
                }
            }
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, offset: usize) -> Option<&str> {
        match self.tokens.get(self.pos + offset) {
            Some(Token::Word(w)) => Some(w.as_str()),
            _ => None,
        }
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self
            .peek_word(0)
            .is_some_and(|w| w.eq_ignore_ascii_case("or"))
        {
            self.pos += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self
            .peek_word(0)
            .is_some_and(|w| w.eq_ignore_ascii_case("and"))
        {
            self.pos += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self
            .peek_word(0)
            .is_some_and(|w| w.eq_ignore_ascii_case("not"))
        {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.tokens.get(self.pos) == Some(&Token::LParen) {
            self.pos += 1;
            let inner = self.or()?;
            if self.next() != Some(Token::RParen) {
                return Err("missing closing parenthesis".to_owned());
            }
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Filter, String> {
        let first = match self.next() {
            Some(Token::Word(w)) | Some(Token::Quoted(w)) => w,
            other => return Err(format!("expected a selector or value, found {other:?}")),
        };
        // `"v" in Selector` / `"v" not in Selector`
        let is_in = self
            .peek_word(0)
            .is_some_and(|w| w.eq_ignore_ascii_case("in"));
        let is_not_in = self
            .peek_word(0)
            .is_some_and(|w| w.eq_ignore_ascii_case("not"))
            && self
                .peek_word(1)
                .is_some_and(|w| w.eq_ignore_ascii_case("in"));
        if is_in || is_not_in {
            self.pos += if is_in { 1 } else { 2 };
            let selector = match self.next() {
                Some(Token::Word(w)) => selector(&w),
                other => return Err(format!("expected a selector after 'in', found {other:?}")),
            };
            let op = if is_in { Op::Contains } else { Op::NotContains };
            return Ok(Filter::Match {
                selector,
                op,
                value: first,
            });
        }
        let selector = selector(&first);
        let op = match self.next() {
            Some(Token::Eq) => Op::Equal,
            Some(Token::Ne) => Op::NotEqual,
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("contains") => Op::Contains,
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("matches") => {
                return Err("the 'matches' operator is not supported by devconsul".to_owned())
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("not") => match self.next() {
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("contains") => Op::NotContains,
                other => return Err(format!("expected 'contains' after 'not', found {other:?}")),
            },
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("is") => {
                let negated = self
                    .peek_word(0)
                    .is_some_and(|w| w.eq_ignore_ascii_case("not"));
                if negated {
                    self.pos += 1;
                }
                match self.next() {
                    Some(Token::Word(w)) if w.eq_ignore_ascii_case("empty") => {}
                    other => return Err(format!("expected 'empty', found {other:?}")),
                }
                let op = if negated { Op::IsNotEmpty } else { Op::IsEmpty };
                return Ok(Filter::Match {
                    selector,
                    op,
                    value: String::new(),
                });
            }
            other => return Err(format!("expected an operator, found {other:?}")),
        };
        let value = match self.next() {
            Some(Token::Word(w)) | Some(Token::Quoted(w)) => w,
            other => return Err(format!("expected a value, found {other:?}")),
        };
        Ok(Filter::Match {
            selector,
            op,
            value,
        })
    }
}

fn selector(word: &str) -> Vec<String> {
    word.split('.').map(str::to_owned).collect()
}

fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::LParen);
            }
            ')' => {
                chars.next();
                out.push(Token::RParen);
            }
            '=' | '!' => {
                chars.next();
                if chars.next() != Some('=') {
                    return Err(format!("expected '=' after '{c}'"));
                }
                out.push(if c == '=' { Token::Eq } else { Token::Ne });
            }
            '"' | '`' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string".to_owned()),
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => match chars.next() {
                            Some(e) => s.push(e),
                            None => return Err("unterminated string".to_owned()),
                        },
                        Some(other) => s.push(other),
                    }
                }
                out.push(Token::Quoted(s));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '=' | '!' | '"' | '`') {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push(Token::Word(s));
            }
        }
    }
    if out.is_empty() {
        return Err("empty expression".to_owned());
    }
    Ok(out)
}

fn resolve<'a>(mut v: &'a Value, path: &[String]) -> Option<&'a Value> {
    for part in path {
        let obj = v.as_object()?;
        v = match obj.get(part) {
            Some(x) => x,
            None => obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(part))?.1,
        };
    }
    Some(v)
}

fn scalar_eq(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Bool(b) => want.parse::<bool>().is_ok_and(|w| w == *b),
        Value::Number(n) => n.to_string() == want || want.parse::<f64>().ok() == n.as_f64(),
        _ => false,
    }
}

fn equals(field: Option<&Value>, want: &str) -> bool {
    field.is_some_and(|v| scalar_eq(v, want))
}

fn contains(field: Option<&Value>, want: &str) -> bool {
    match field {
        Some(Value::Array(items)) => items.iter().any(|i| scalar_eq(i, want)),
        Some(Value::Object(map)) => map.contains_key(want),
        Some(Value::String(s)) => s.contains(want),
        _ => false,
    }
}

fn is_empty(field: Option<&Value>) -> bool {
    match field {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry() -> Value {
        json!({
            "Node": {"Node": "n1", "Meta": {}},
            "Service": {"ID": "api-1", "Tags": ["v2", "blue"], "Meta": {"version": "2"}, "Port": 8080},
        })
    }

    fn check(src: &str) -> bool {
        Filter::parse(src).unwrap().matches(&entry())
    }

    #[test]
    fn operators() {
        assert!(check(r#"Service.Tags contains "v2""#));
        assert!(!check(r#"Service.Tags contains "v1""#));
        assert!(check(r#"Service.Tags not contains "v1""#));
        assert!(check(r#""blue" in Service.Tags"#));
        assert!(check(r#""red" not in Service.Tags"#));
        assert!(check(r#"Service.Meta.version == "2""#));
        assert!(check(r#"Service.Meta.version != "3""#));
        assert!(check(r#"Service.Meta.missing != "3""#));
        assert!(!check(r#"Service.Meta.missing == "3""#));
        assert!(check("Service.Port == 8080"));
        assert!(check("Node.Meta is empty"));
        assert!(check("Service.Tags is not empty"));
        assert!(check("service.meta.version == `2`"));
    }

    #[test]
    fn combinators() {
        assert!(check(
            r#"Service.Tags contains "v2" and Service.Meta.version == "2""#
        ));
        assert!(!check(
            r#"Service.Tags contains "v2" and Service.Meta.version == "1""#
        ));
        assert!(check(
            r#"Service.Tags contains "v9" or Service.Meta.version == "2""#
        ));
        assert!(check(r#"not (Service.Tags contains "v9")"#));
        assert!(!check(
            r#"not Service.Tags contains "v2" or Node.Node == "n2""#
        ));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "Service.Tags",
            "Service.Tags ==",
            "(a == b",
            "a = b",
            "a matches \"x\"",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}
