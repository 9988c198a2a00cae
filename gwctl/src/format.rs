//! Number and text formatting shared by the CLI tables and the console, so both read alike.

use gatewayd::admin::model::RouteInfo;

/// Milliseconds: `0.41ms`, `12.3ms`, `182ms`, `1.24s`; `-` for `None`.
pub fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 1000.0 => format!("{:.2}s", v / 1000.0),
        Some(v) if v >= 100.0 => format!("{v:.0}ms"),
        Some(v) if v >= 10.0 => format!("{v:.1}ms"),
        Some(v) => format!("{v:.2}ms"),
    }
}

/// A 0–1 rate as a percentage: `0.06%`, `4.2%`, `100%`.
pub fn pct(rate: f64) -> String {
    let p = rate * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p < 10.0 {
        format!("{p:.2}%")
    } else if p < 100.0 {
        format!("{p:.1}%")
    } else {
        "100%".into()
    }
}

/// Requests per second: `0`, `3.1`, `182`, `12.4k`.
pub fn rps(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 100.0 {
        format!("{v:.1}")
    } else if v < 10_000.0 {
        format!("{v:.0}")
    } else {
        format!("{:.1}k", v / 1000.0)
    }
}

/// A count: `904`, `48.2k`, `3.1M`.
pub fn count(v: u64) -> String {
    if v < 10_000 {
        v.to_string()
    } else if v < 1_000_000 {
        format!("{:.1}k", v as f64 / 1000.0)
    } else {
        format!("{:.1}M", v as f64 / 1e6)
    }
}

/// An age in seconds: `4s`, `3m`, `2h`, `5d`.
pub fn age(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 60.0 {
        format!("{s:.0}s")
    } else if s < 3600.0 {
        format!("{:.0}m", (s / 60.0).floor())
    } else if s < 86_400.0 {
        format!("{:.0}h", (s / 3600.0).floor())
    } else {
        format!("{:.0}d", (s / 86_400.0).floor())
    }
}

/// What a route matches: `api.example.com/api/*`, `/checkout POST`, `/*`.
pub fn route_match(r: &RouteInfo) -> String {
    let mut s = r.host.clone().unwrap_or_default();
    s.push_str(&r.path);
    if r.path_kind == "prefix" {
        if !s.ends_with('/') {
            s.push('/');
        }
        s.push('*');
    }
    if !r.methods.is_empty() {
        s.push(' ');
        s.push_str(&r.methods.join(","));
    }
    for h in &r.headers {
        s.push_str(&format!(
            " [{}{}]",
            h.name,
            h.value
                .as_ref()
                .map(|v| format!("={v}"))
                .unwrap_or_default()
        ));
    }
    s
}

/// The RFC 3339 time without date when it is on `today` (`YYYY-MM-DD`), shortened otherwise:
/// `09:16:02` or `03-13 17:02`.
pub fn when(rfc3339: &str, today: &str) -> String {
    let (date, rest) = rfc3339.split_once('T').unwrap_or((rfc3339, ""));
    let time: String = rest.chars().take(8).collect();
    if date == today || today.is_empty() && date.is_empty() {
        time
    } else {
        let md = date.get(5..).unwrap_or(date);
        format!("{md} {}", time.get(..5).unwrap_or(&time))
    }
}

/// A policy's decisions, the non-zero ones, most first: `allowed 120 · limited 4`; `none yet`.
pub fn decisions(d: &std::collections::BTreeMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = d.iter().filter(|(_, n)| **n > 0).collect();
    if v.is_empty() {
        return "none yet".into();
    }
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(o, n)| format!("{o} {n}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A policy's decisions of its recent window, most first, with the window when it is shorter
/// than a minute: `limited 3 · allowed 2`, `allowed 4 (12s)`; `none`.
pub fn recent_decisions(r: &gatewayd::admin::model::RecentDecisions) -> String {
    if r.decisions.values().all(|n| *n == 0) {
        return "none".into();
    }
    let d = decisions(&r.decisions);
    match r.window_seconds {
        s if s < 60 => format!("{d} ({s}s)"),
        _ => d,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(ms(Some(0.412)), "0.41ms");
        assert_eq!(ms(Some(12.34)), "12.3ms");
        assert_eq!(ms(Some(182.4)), "182ms");
        assert_eq!(ms(Some(1240.0)), "1.24s");
        assert_eq!(ms(None), "-");
        assert_eq!(pct(0.000643), "0.06%");
        assert_eq!(pct(0.042), "4.20%");
        assert_eq!(pct(0.5), "50.0%");
        assert_eq!(pct(0.0), "0%");
        assert_eq!(rps(182.4), "182");
        assert_eq!(rps(20.34), "20.3");
        assert_eq!(count(48_213), "48.2k");
        assert_eq!(age(42.5), "42s");
        assert_eq!(age(3600.0), "1h");
    }

    #[test]
    fn recent_windows() {
        let mut r = gatewayd::admin::model::RecentDecisions::default();
        assert_eq!(recent_decisions(&r), "none");
        r.decisions = [("allowed".to_string(), 4), ("limited".to_string(), 9)].into();
        r.window_seconds = 12;
        assert_eq!(recent_decisions(&r), "limited 9 · allowed 4 (12s)");
        r.window_seconds = 60;
        assert_eq!(recent_decisions(&r), "limited 9 · allowed 4");
    }

    #[test]
    fn matches_and_times() {
        let routes = crate::test_fixtures::routes();
        assert_eq!(route_match(&routes[0]), "api.example.com/api/*");
        assert_eq!(route_match(&routes[1]), "/* GET,HEAD");
        // A template is shown as written, without the prefix's `*`.
        let mut t = routes[1].clone();
        (t.path, t.path_kind) = ("/pets/{id}".into(), "template".into());
        assert_eq!(route_match(&t), "/pets/{id} GET,HEAD");
        assert_eq!(
            route_match(&routes[2]),
            "shop.example.com/checkout POST [x-tenant]"
        );
        assert_eq!(when("2025-03-14T09:16:02Z", "2025-03-14"), "09:16:02");
        assert_eq!(when("2025-03-13T17:02:11Z", "2025-03-14"), "03-13 17:02");
    }
}

/// `YYYY-MM-DD` (UTC) of a unix second; "" for 0 (no clock yet).
pub fn date_of(unix: u64) -> String {
    if unix == 0 {
        return String::new();
    }
    // Howard Hinnant's days-to-civil.
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod date_tests {
    #[test]
    fn dates() {
        assert_eq!(super::date_of(1_741_944_300), "2025-03-14");
        assert_eq!(super::date_of(951_782_400), "2000-02-29");
        assert_eq!(super::date_of(0), "");
    }
}
