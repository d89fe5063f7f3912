//! Debug aid: parse the files given on the command line and dump the AST or syntax errors.
fn main() {
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path).unwrap();
        let (file, diags) = aftercart::syntax::parse(aftercart::diagnostic::FileId(0), &text);
        println!("{path}: {} items, {} diags", file.items.len(), diags.len());
        for d in diags {
            println!(
                "  {} {} {:?}",
                d.code,
                d.message,
                d.labels
                    .first()
                    .map(|l| (l.span.start, &text[l.span.start..l.span.end]))
            );
        }
        if std::env::var("DUMP").is_ok() {
            println!("{file:#?}");
        }
    }
}
