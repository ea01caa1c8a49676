//! Every shipped article and template fits its own reading level by its language's formula.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use careloop_literacy::assess;

#[test]
fn shipped_content_fits_its_reading_level() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content");
    let docs = careloop_content::load_dir(&dir)
        .map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap();
    assert!(!docs.is_empty());
    let misses: Vec<String> = docs
        .iter()
        .filter_map(|doc| {
            let verdict = assess(&doc.body, doc.language).against(doc.reading_level);
            let path = doc.path.strip_prefix(&dir).unwrap_or(&doc.path);
            (!verdict.fits()).then(|| format!("content/{}: {verdict}", path.display()))
        })
        .collect();
    assert!(
        misses.is_empty(),
        "{} of {} content files miss their reading band:\n{}",
        misses.len(),
        docs.len(),
        misses.join("\n")
    );
}
