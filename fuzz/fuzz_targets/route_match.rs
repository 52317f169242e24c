//! Profile routes from arbitrary patterns never panic, never blow up, and match only whole
//! paths.
#![no_main]

use conduit_api::destination as api;
use conduit_route::Routes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff);
    let pattern = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let header = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let condition = |m| api::RequestMatch { r#match: Some(m) };
    use api::request_match::Match;
    let profile = api::DestinationProfile {
        routes: vec![
            api::Route {
                name: "path".into(),
                condition: Some(condition(Match::Path(api::PathMatch { regex: pattern.clone() }))),
                ..Default::default()
            },
            api::Route {
                name: "header".into(),
                condition: Some(condition(Match::Header(api::HeaderMatch {
                    name: "x-fuzz".into(),
                    value: Some(api::header_match::Value::Regex(header.clone())),
                }))),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let routes = Routes::from_profile(&profile);
    let uri = format!("/{}", path.trim_start_matches('/'));
    let Ok(req) = http::Request::get(uri.as_str())
        .header("x-fuzz", http::HeaderValue::from_bytes(header.as_bytes()).unwrap_or(http::HeaderValue::from_static("v")))
        .body(())
    else {
        return;
    };
    if let Some(route) = routes.find(&req) {
        if route.name().as_ref() == "path" {
            // Whole-path semantics: the anchored pattern matched all of the path.
            let re = regex::Regex::new(&format!("^(?:{pattern})$")).expect("it compiled for the route");
            assert!(re.is_match(req.uri().path()));
        }
    }
});
