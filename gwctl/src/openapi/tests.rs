#![allow(clippy::unwrap_used)]
//! The importer on the Petstore fixture and on small descriptions: names, base paths, prefix,
//! templates, extensions reported, the output validating, and `--diff`.

use super::*;

const PETSTORE: &str = include_str!("../../../tests/fixtures/openapi/petstore-v3.yaml");
const PETSTORE_JSON: &str = include_str!("../../../tests/fixtures/openapi/petstore-v3.json");

fn petstore(prefix: &str) -> Import {
    let doc = parse_document(PETSTORE).unwrap();
    import(
        &doc,
        &Options {
            prefix: prefix.into(),
        },
    )
}

/// The rendered routes beside a service, through gatewayd's own validation.
fn validate(routes: &[ImportedRoute]) -> gatewayd::config::Config {
    let toml = render(routes, "petstore", "test");
    let src = format!(
        "[services.petstore]\nendpoints = [\"127.0.0.1:1\"]\n[policies.api-jwt]\nkind = \"rate_limit\"\nrate = \"9/s\"\n{toml}"
    );
    gatewayd::config::from_str(&src, "import.toml").unwrap_or_else(|e| panic!("{e}\n{src}"))
}

#[test]
fn petstore_routes_one_per_operation_under_the_server_base_path() {
    let i = petstore("");
    assert_eq!(i.routes.len(), 19);
    let get = i.routes.iter().find(|r| r.name == "getPetById").unwrap();
    assert_eq!(get.path, "/api/v3/pet/{petId}");
    assert!(get.templated);
    assert_eq!(get.method, "GET");
    let find = i
        .routes
        .iter()
        .find(|r| r.name == "findPetsByStatus")
        .unwrap();
    assert_eq!(find.path, "/api/v3/pet/findByStatus");
    assert!(!find.templated);
    assert_eq!(validate(&i.routes).routes.len(), 19);
    // YAML and JSON give the same routes.
    let j = import(&parse_document(PETSTORE_JSON).unwrap(), &Options::default());
    assert_eq!(i.routes, j.routes);
}

#[test]
fn prefix_comes_before_the_base_path() {
    let i = petstore("/v1");
    assert!(i.routes.iter().all(|r| r.path.starts_with("/v1/api/v3/")));
}

#[test]
fn extensions_become_policies_and_what_cannot_is_reported() {
    let i = petstore("");
    let route = |n: &str| i.routes.iter().find(|r| r.name == n).unwrap();
    // Named policies as written, then the path item's inline CORS.
    assert_eq!(route("getPetById").policies, ["api-jwt", "getPetById-cors"]);
    // The path item's CORS applies to every operation of the path, each its own table.
    assert_eq!(route("deletePet").policies, ["deletePet-cors"]);
    let rl = &route("addPet").generated[0];
    assert_eq!(rl.name, "addPet-rate-limit");
    assert_eq!(rl.table["rate"].as_str(), Some("10/h"));
    assert_eq!(rl.table["burst"].as_integer(), Some(10));
    assert_eq!(
        i.named_policies(),
        [("api-jwt".to_string(), "GET /pet/{petId}".to_string())]
    );
    // A claim key needs a jwt policy: reported with gatewayd's reason, the route kept without it.
    assert_eq!(i.unmapped.len(), 1, "{:?}", i.unmapped);
    assert_eq!(i.unmapped[0].at, "POST /store/order");
    assert!(i.unmapped[0]
        .reason
        .starts_with("x-meshgate-rate-limit: refused by validation"));
    assert!(route("placeOrder").policies.is_empty());
    assert!(route("getInventory").policies.is_empty());
}

#[test]
fn names_are_sanitized_made_unique_and_derived_without_operation_id() {
    let doc = parse_document(
        r##"{"openapi": "3.1.0", "servers": [{"url": "https://{host}/base/", "variables": {"host": {"default": "x"}}}, {"url": "https://y/other"}],
            "paths": {
              "/repos/{owner}/{repo}": {"get": {"operationId": "repos/get"}, "delete": {}},
              "/a/{x}": {"get": {"operationId": "repos/get"}},
              "/a/{y}": {"get": {"operationId": "dup"}},
              "/Calls/{Sid}.json": {"get": {}},
              "/bad/{x}{y}": {"get": {}},
              "/ref": {"$ref": "#/components/pathItems/x"}
            },
            "webhooks": {"newPet": {"post": {}}}}"##,
    )
    .unwrap();
    let i = import(&doc, &Options::default());
    let names: Vec<(&str, &str)> = i
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.path.as_str()))
        .collect();
    // serde_json orders object keys, so the order is stable whatever the file's order.
    assert_eq!(
        names,
        [
            ("get-Calls-Sid-.json", "/base/Calls/{Sid}.json"),
            ("repos-get", "/base/a/{x}"),
            ("repos-get-2", "/base/repos/{owner}/{repo}"),
            ("delete-repos-owner-repo", "/base/repos/{owner}/{repo}"),
        ]
    );
    let reasons: Vec<String> = i
        .unmapped
        .iter()
        .map(|u| format!("{}: {}", u.at, u.reason))
        .collect();
    let has = |s: &str| reasons.iter().any(|r| r.contains(s));
    assert!(
        has("servers: server 2 has base path '/other'"),
        "{reasons:#?}"
    );
    assert!(has("webhooks: webhooks are calls the API makes"));
    assert!(has(
        "GET /a/{y}: matches the same requests as route 'repos-get'"
    ));
    assert!(has("GET /bad/{x}{y}: path is not a meshgate template"));
    assert!(has(
        "/ref: path item '$ref' \"#/components/pathItems/x\" does not resolve to an object"
    ));
    validate(&i.routes);
}

#[test]
fn path_item_refs_within_the_document_are_followed() {
    let doc = parse_document(
        r##"{"openapi": "3.1.0",
            "paths": {
              "/reports/{id}": {"$ref": "#/components/pathItems/Report", "x-meshgate-policies": ["mine"]},
              "/again/{id}": {"$ref": "#/components/pathItems/Alias"},
              "/far": {"$ref": "other.yaml#/components/pathItems/Report"},
              "/loop": {"$ref": "#/components/pathItems/Loop"}
            },
            "components": {"pathItems": {
              "Report": {"get": {"operationId": "getReport"}, "x-meshgate-policies": ["theirs"]},
              "Alias": {"$ref": "#/components/pathItems/Report"},
              "Loop": {"$ref": "#/components/pathItems/Loop"}
            }}}"##,
    )
    .unwrap();
    let i = import(&doc, &Options::default());
    let routes: Vec<(&str, &str, &[String])> = i
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.path.as_str(), r.policies.as_slice()))
        .collect();
    // The referring item's extensions win over the target's.
    assert_eq!(
        routes,
        [
            ("getReport", "/again/{id}", &["theirs".to_string()][..]),
            ("getReport-2", "/reports/{id}", &["mine".to_string()][..]),
        ]
    );
    let reasons: Vec<String> = i
        .unmapped
        .iter()
        .map(|u| format!("{}: {}", u.at, u.reason))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:#?}");
    assert!(reasons[0].starts_with("/far: path item '$ref' \"other.yaml#"));
    assert!(reasons[0].contains("is not in this document"));
    assert!(reasons[1].starts_with("/loop: path item '$ref' goes through more than 8"));
}

#[test]
fn versions_other_than_3_0_and_3_1_are_refused() {
    assert!(matches!(
        parse_document("swagger: '2.0'\npaths: {}\n"),
        Err(ImportError::Version(_))
    ));
    assert!(matches!(
        parse_document("openapi: 3.0.0\npaths: {}\n"),
        Err(ImportError::NoPaths)
    ));
    assert!(matches!(
        parse_document("{ not json"),
        Err(ImportError::Syntax(_))
    ));
}

#[test]
fn diff_reports_added_removed_and_changed_routes_of_the_service_only() {
    let i = petstore("");
    let imported = validate(&i.routes);
    let config = gatewayd::config::from_str(
        r#"[services.petstore]
endpoints = ["127.0.0.1:1"]
[services.other]
endpoints = ["127.0.0.1:2"]

[[routes]]
name = "getPetById"
path_template = "/api/v3/pet/{id}"
methods = ["GET"]
backends = [{ name = "petstore", weight = 1 }]

[[routes]]
name = "logoutUser"
path = "/api/v3/user/logout"
methods = ["GET"]
timeout = "3s"
backends = [{ name = "petstore", weight = 1 }]

[[routes]]
name = "legacy"
path_prefix = "/old/"
backends = [{ name = "petstore", weight = 1 }]

[[routes]]
name = "elsewhere"
path_prefix = "/x/"
backends = [{ name = "other", weight = 1 }]
"#,
        "c.toml",
    )
    .unwrap();
    let changes = diff(&config, &imported, &[], "petstore");
    assert_eq!(
        changes
            .iter()
            .filter(|c| matches!(c, RouteChange::Added(_)))
            .count(),
        17
    );
    assert!(changes.contains(&RouteChange::Removed("legacy".into())));
    assert!(!changes
        .iter()
        .any(|c| matches!(c, RouteChange::Removed(n) if n == "elsewhere")));
    // A hand-set timeout is not a change; another template is.
    assert!(changes.iter().any(
        |c| matches!(c, RouteChange::Changed(n, before, _) if n == "getPetById" && before.contains("{id}"))
    ));
    assert!(!changes
        .iter()
        .any(|c| matches!(c, RouteChange::Changed(n, ..) if n == "logoutUser")));
    assert!(diff(&imported, &imported, &[], "petstore").is_empty());
    // A generated policy table that differs makes its route changed.
    let mut edited = imported.clone();
    let rl = "addPet-rate-limit".to_string();
    edited.policies.remove(&rl);
    let changes = diff(&edited, &imported, std::slice::from_ref(&rl), "petstore");
    assert!(
        matches!(&changes[..], [RouteChange::Changed(n, before, _)] if n == "addPet" && before.contains("None")),
        "{changes:?}"
    );
}
