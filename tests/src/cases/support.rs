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

/// One HTTP/2 request on its own connection: status and headers (the body is read and dropped).
pub async fn h2_once(
    gw: &meshgate_e2e::harness::Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap) {
    let io = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(io).await.unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", gw.addr));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
    let resp = tokio::time::timeout(meshgate_e2e::harness::patience(), resp)
        .await
        .unwrap()
        .unwrap();
    let (parts, mut body) = resp.into_parts();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        let _: bytes::Bytes = chunk;
    }
    conn.abort();
    (parts.status.as_u16(), parts.headers)
}
