//! `docs/promises.md` names, for each promise the docs make, the test that proves it. This
//! checks that every test it names exists (a Rust test function in the file named, or a
//! Playwright test of that title in the spec named), so the table cannot point at a test that
//! was renamed or removed.

use std::path::Path;

#[test]
fn every_test_the_promises_name_exists() {
    let server = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = server.parent().expect("the workspace");
    let table = std::fs::read_to_string(root.join("docs/promises.md")).expect("docs/promises.md");
    let mut named = 0;
    let mut missing = Vec::new();
    for quoted in table.split('`').skip(1).step_by(2) {
        if let Some((file, function)) = quoted.split_once("::") {
            if !(file.starts_with("tests/") || file.starts_with("src/")) {
                continue;
            }
            named += 1;
            let text = std::fs::read_to_string(server.join(file)).unwrap_or_default();
            if !text.contains(&format!("fn {function}(")) {
                missing.push(quoted.to_owned());
            }
        } else if let Some((spec, title)) = quoted.split_once(".spec.ts › ") {
            named += 1;
            let path = root.join("end2end/tests").join(format!("{spec}.spec.ts"));
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if !text.contains(&format!("test(\"{title}\"")) {
                missing.push(quoted.to_owned());
            }
        }
    }
    assert!(
        named > 60,
        "the table names {named} tests: is it read right?"
    );
    assert!(
        missing.is_empty(),
        "named in docs/promises.md, not found: {missing:#?}"
    );
}
