//! Small helpers over `roxmltree` for reading PMML elements: children by
//! local name (PMML documents use a versioned default namespace), typed
//! attributes, and error messages that point at the element's line.

use roxmltree::Node;

use crate::value::{parse_f64, DataType, OpType};

/// A load-time error message (turned into `Error::Load` by the caller).
pub type LoadResult<T> = Result<T, String>;

/// Deepest element nesting accepted (evaluation recurses over expressions).
pub const MAX_DEPTH: usize = 512;

/// `<Element> (line N)` for messages.
pub fn at(node: Node) -> String {
    let pos = node.document().text_pos_at(node.range().start);
    format!("<{}> (line {})", node.tag_name().name(), pos.row)
}

/// An error about `node`.
pub fn err<T>(node: Node, msg: impl AsRef<str>) -> LoadResult<T> {
    Err(format!("{}: {}", at(node), msg.as_ref()))
}

/// Element children of `node`.
pub fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(|c| c.is_element())
}

/// Element children of `node` named `name`.
pub fn children<'a, 'i: 'a>(
    node: Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    elements(node).filter(move |c| c.tag_name().name() == name)
}

/// The first element child named `name`.
pub fn child<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> Option<Node<'a, 'i>> {
    elements(node).find(|c| c.tag_name().name() == name)
}

/// The first element child named `name`, or an error.
pub fn req_child<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> LoadResult<Node<'a, 'i>> {
    child(node, name).ok_or_else(|| format!("{}: missing <{name}>", at(node)))
}

/// An attribute.
pub fn attr<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attribute(name)
}

/// A required attribute.
pub fn req_attr<'a>(node: Node<'a, '_>, name: &str) -> LoadResult<&'a str> {
    node.attribute(name)
        .ok_or_else(|| format!("{}: missing attribute '{name}'", at(node)))
}

/// A numeric attribute.
pub fn attr_f64(node: Node, name: &str) -> LoadResult<Option<f64>> {
    match node.attribute(name) {
        None => Ok(None),
        Some(s) => parse_f64(s)
            .map(Some)
            .ok_or_else(|| format!("{}: attribute {name}='{s}' is not a number", at(node))),
    }
}

/// A required numeric attribute.
pub fn req_f64(node: Node, name: &str) -> LoadResult<f64> {
    attr_f64(node, name)?.ok_or_else(|| format!("{}: missing attribute '{name}'", at(node)))
}

/// A numeric attribute with a default.
pub fn f64_or(node: Node, name: &str, default: f64) -> LoadResult<f64> {
    Ok(attr_f64(node, name)?.unwrap_or(default))
}

/// A `dataType` attribute.
pub fn data_type(node: Node) -> LoadResult<Option<DataType>> {
    node.attribute("dataType")
        .map(|s| DataType::parse(s).map_err(|e| format!("{}: {e}", at(node))))
        .transpose()
}

/// An `optype` attribute.
pub fn op_type(node: Node) -> LoadResult<Option<OpType>> {
    node.attribute("optype")
        .map(|s| OpType::parse(s).map_err(|e| format!("{}: {e}", at(node))))
        .transpose()
}

/// A boolean attribute (`true`/`false`) with a default.
pub fn bool_or(node: Node, name: &str, default: bool) -> LoadResult<bool> {
    match node.attribute(name) {
        None => Ok(default),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(s) => err(node, format!("attribute {name}='{s}' is not a boolean")),
    }
}

/// Checks the element nesting depth of the whole document.
pub fn check_depth(doc: &roxmltree::Document) -> LoadResult<()> {
    // Nodes come in document order, so a parent's depth is known first.
    let mut depth: Vec<u16> = Vec::new();
    for n in doc.descendants() {
        let id = n.id().get_usize();
        let d = n
            .parent()
            .map_or(0, |p| depth.get(p.id().get_usize()).copied().unwrap_or(0))
            + 1;
        if depth.len() <= id {
            depth.resize(id + 1, 0);
        }
        depth[id] = d;
        if usize::from(d) > MAX_DEPTH {
            return err(n, format!("elements nested deeper than {MAX_DEPTH} levels"));
        }
    }
    Ok(())
}

/// Splits the content of a PMML `<Array>`: whitespace-separated tokens,
/// where double-quoted tokens may hold spaces and `\"` escapes.
pub fn array_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut tok = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&'"') => {
                        tok.push('"');
                        chars.next();
                    }
                    '"' => break,
                    c => tok.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                tok.push(c);
                chars.next();
            }
        }
        out.push(tok);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_tokens_quoted() {
        assert_eq!(
            array_tokens(r#" "a b" c  "d\"e" 1.5 "#),
            vec!["a b", "c", "d\"e", "1.5"]
        );
        assert_eq!(array_tokens(r#""""#), vec![""]);
        assert!(array_tokens("  ").is_empty());
    }
}
