//! Small helpers shared by the cases.

use meshgate_e2e::harness::Origin;

/// `[services.NAME]` with the origins as static endpoints and a balancing policy.
pub fn service(name: &str, origins: &[&Origin], balance: &str) -> String {
    let eps: Vec<String> = origins.iter().map(|o| format!("\"{}\"", o.addr)).collect();
    format!(
        "[services.{name}]\nendpoints = [{}]\nbalance = \"{balance}\"\n\n",
        eps.join(", ")
    )
}

/// A reqwest client without proxies, with keep-alive.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The `origin` field of a JSON answer from a harness origin.
pub async fn origin_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let origin = resp
        .headers()
        .get("x-origin")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, origin)
}

/// Services `blue` and `green` (one origin each, round robin) and route `web` splitting between
/// them at the given weights, followed by `extra` (more route keys or tables).
pub fn blue_green(blue: &Origin, green: &Origin, blue_w: u32, green_w: u32, extra: &str) -> String {
    format!(
        "{}{}[[routes]]\nname = \"web\"\nbackends = [{{ name = \"blue\", weight = {blue_w} }}, {{ name = \"green\", weight = {green_w} }}]\n{extra}",
        service("blue", &[blue], "round_robin"),
        service("green", &[green], "round_robin")
    )
}
