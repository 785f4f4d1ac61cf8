//! The `rel="next"` target of an RFC 8288 (formerly RFC 5988) `Link` header, as the Hub paginates with.

/// The target of the first link whose `rel` includes `next` in one `Link` header value, such as
/// `<https://huggingface.co/api/models?cursor=abc>; rel="next"`. Several comma-separated links are allowed,
/// and quoted parameter values may hold `,` or `;`.
pub(crate) fn next_link(value: &str) -> Option<&str> {
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let after = rest.strip_prefix('<')?;
        let end = after.find('>')?;
        let target = after[..end].trim();
        rest = &after[end + 1..];
        let mut is_next = false;
        while let Some(params) = rest.trim_start().strip_prefix(';') {
            let params = params.trim_start();
            let name_end = params.find(['=', ';', ',']).unwrap_or(params.len());
            let name = params[..name_end].trim();
            rest = &params[name_end..];
            let mut value = "";
            if let Some(raw) = rest.strip_prefix('=') {
                let raw = raw.trim_start();
                if let Some(quoted) = raw.strip_prefix('"') {
                    let close = quoted.find('"').unwrap_or(quoted.len());
                    value = &quoted[..close];
                    rest = quoted.get(close + 1..).unwrap_or("");
                } else {
                    let value_end = raw.find([';', ',']).unwrap_or(raw.len());
                    value = raw[..value_end].trim();
                    rest = &raw[value_end..];
                }
            }
            if name.eq_ignore_ascii_case("rel")
                && value
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
            {
                is_next = true;
            }
        }
        if is_next && !target.is_empty() {
            return Some(target);
        }
        rest = rest.trim_start();
        if !rest.starts_with(',') {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn finds_the_next_link_in_the_usual_forms() {
        assert_eq!(
            next_link(r#"<https://huggingface.co/api/models?cursor=abc&limit=2>; rel="next""#),
            Some("https://huggingface.co/api/models?cursor=abc&limit=2")
        );
        assert_eq!(next_link("<https://h/p?a=1>;rel=next"), Some("https://h/p?a=1"));
        assert_eq!(next_link(r#"<https://h/p>; rel="prev next""#), Some("https://h/p"));
        assert_eq!(next_link(r#"<https://h/p>; REL="Next""#), Some("https://h/p"));
    }

    #[test]
    fn picks_next_among_several_links_and_quoted_commas() {
        let value = r#"<https://h/first>; rel="first"; title="a, b; c", <https://h/p?provider=a,b>; rel="next""#;
        assert_eq!(next_link(value), Some("https://h/p?provider=a,b"));
        let value = r#"<https://h/prev>; rel="prev", <https://h/last>; rel="last""#;
        assert_eq!(next_link(value), None);
    }

    #[test]
    fn garbage_is_no_link() {
        for value in [
            "",
            "next",
            "https://h/p; rel=next",
            "<https://h/p",
            "<>; rel=next",
            "<https://h/p>",
        ] {
            assert_eq!(next_link(value), None, "{value}");
        }
    }
}
