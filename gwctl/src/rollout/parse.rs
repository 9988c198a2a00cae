//! Parsing of the canary and weights arguments (kept pure so clap errors and tests agree).

use super::{RolloutError, Weights};

/// `5,25,50,100` → `[5, 25, 50, 100]`: percentages of the canary, 1–100, strictly increasing.
pub fn parse_steps(s: &str) -> Result<Vec<u32>, RolloutError> {
    let bad = |why: String| RolloutError::Invalid(format!("--steps {s:?}: {why}"));
    let mut out: Vec<u32> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let v: u32 = part
            .trim_end_matches('%')
            .parse()
            .map_err(|_| bad(format!("{part:?} is not a whole percentage")))?;
        if !(1..=100).contains(&v) {
            return Err(bad(format!("{v} is outside 1–100")));
        }
        if out.last().is_some_and(|last| *last >= v) {
            return Err(bad("steps must increase".into()));
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err(bad("no step".into()));
    }
    Ok(out)
}

/// A rate as a fraction: `1%` → 0.01, `0.5%` → 0.005, `0.01` → 0.01. Must lie in 0–1.
pub fn parse_rate(s: &str) -> Result<f64, RolloutError> {
    let bad = || RolloutError::Invalid(format!("{s:?} is not a rate (try 1% or 0.01)"));
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => t.parse::<f64>().map_err(|_| bad())?,
    };
    if !(0.0..=1.0).contains(&v) || v.is_nan() {
        return Err(bad());
    }
    Ok(v)
}

/// `["blue=90", "green=10"]` → weights. Names are unique, weights 0–10000, one above 0.
pub fn parse_weight_pairs<S: AsRef<str>>(pairs: &[S]) -> Result<Weights, RolloutError> {
    let mut out = Weights::new();
    for p in pairs {
        let p = p.as_ref();
        let bad =
            |why: &str| RolloutError::Invalid(format!("{p:?}: {why} (expected BACKEND=WEIGHT)"));
        let (name, w) = p.split_once('=').ok_or_else(|| bad("no '='"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad("empty backend name"));
        }
        let w: u32 = w
            .trim()
            .parse()
            .map_err(|_| bad("weight is not a whole number"))?;
        if w > 10_000 {
            return Err(bad("weight above 10000"));
        }
        if out.insert(name.to_string(), w).is_some() {
            return Err(bad("backend named twice"));
        }
    }
    if out.values().all(|w| *w == 0) {
        return Err(RolloutError::Invalid(
            "at least one backend needs a weight above 0".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert_eq!(parse_steps("5,25,50,100").unwrap(), [5, 25, 50, 100]);
        assert_eq!(parse_steps(" 10% , 100 ").unwrap(), [10, 100]);
        assert!(parse_steps("").is_err());
        assert!(parse_steps("0,50").is_err());
        assert!(parse_steps("50,25").is_err());
        assert!(parse_steps("50,50").is_err());
        assert!(parse_steps("150").is_err());
        assert!(parse_steps("x").is_err());
    }

    #[test]
    fn rates() {
        assert!((parse_rate("1%").unwrap() - 0.01).abs() < 1e-12);
        assert!((parse_rate("0.5%").unwrap() - 0.005).abs() < 1e-12);
        assert!((parse_rate("0.02").unwrap() - 0.02).abs() < 1e-12);
        assert!(parse_rate("150%").is_err());
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("lots").is_err());
    }

    #[test]
    fn weight_pairs() {
        let w = parse_weight_pairs(&["blue=90", "green=10"]).unwrap();
        assert_eq!(w.get("blue"), Some(&90));
        assert_eq!(w.get("green"), Some(&10));
        assert!(parse_weight_pairs(&["blue"]).is_err());
        assert!(parse_weight_pairs(&["=5"]).is_err());
        assert!(parse_weight_pairs(&["blue=x"]).is_err());
        assert!(parse_weight_pairs(&["blue=1", "blue=2"]).is_err());
        assert!(parse_weight_pairs(&["blue=0", "green=0"]).is_err());
        assert!(parse_weight_pairs(&["blue=10001"]).is_err());
    }
}
