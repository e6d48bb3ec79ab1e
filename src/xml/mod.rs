//! libvirt XML in and out: a small namespace-aware element tree, the volume, pool and secret
//! models, and libvirt's output shape.
//!
//! Owns: turning XML text into validated models ([`VolumeDef`], [`PoolDef`], [`SecretDef`])
//! and models into the XML libvirt prints (`vol-dumpxml`, `pool-dumpxml`,
//! `secret-dumpxml`), and the qpool extension namespace
//! (`urn:qpool:volume:1`, see [`ext`]).
//! Must not: do I/O, decide policy, or know anything about image formats beyond their names.
//!
//! Parsing is two steps: `Element::parse` builds a tree (with line numbers for error
//! messages), then `volume.rs` / `pool.rs` read the elements they know, like libvirt's XPath
//! lookups do. Unknown elements outside the qpool namespace are ignored, as libvirt ignores
//! them; unknown elements inside it are refused, so a typo in an extension is never silent.

pub mod ext;
pub mod pool;
pub mod secret;
pub mod volume;

pub use pool::{PoolDef, PoolOutline, PoolReport};
pub use secret::{SecretDef, SecretUsage, SecretUsageType};
pub use volume::{
    AsWritten, BackingReport, BackingStoreDef, CapacityRule, EncryptionDef, EncryptionReport,
    Features, FileAttributes, Permissions, SecretRef, TargetDef, VolumeDef, VolumeReport,
};

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use thiserror::Error;

use crate::units::SizeError;

/// Why an XML document was refused. Each variant names where (an element path and line).
#[derive(Debug, Error)]
pub enum Error {
    /// The text is not well-formed XML.
    #[error("line {line}: malformed XML: {message}")]
    Malformed {
        /// 1-based line of the error.
        line: usize,
        /// The parser's description.
        message: String,
    },
    /// The document's root element is not the expected one.
    #[error("line {line}: root element is <{found}>, expected <{expected}>")]
    WrongRoot {
        /// Line of the root element.
        line: usize,
        /// Name found.
        found: String,
        /// Name expected.
        expected: &'static str,
    },
    /// A required element is missing.
    #[error("{path}: missing {what}")]
    Missing {
        /// Element path of the parent, e.g. `/volume`.
        path: String,
        /// What is missing, e.g. `<name> element`.
        what: String,
    },
    /// A size element or attribute has a bad value.
    #[error("{path} (line {line})")]
    BadSize {
        /// Element path, e.g. `/volume/capacity`.
        path: String,
        /// Line of the element.
        line: usize,
        /// What is wrong with the value.
        #[source]
        source: SizeError,
    },
    /// An element or attribute value is not acceptable.
    #[error("{path} (line {line}): {message}")]
    BadValue {
        /// Element path, e.g. `/volume/target/format/@type`.
        path: String,
        /// Line of the element.
        line: usize,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// The document asks for something qpool does not do.
    #[error("{path} (line {line}): {message}")]
    Unsupported {
        /// Element path.
        path: String,
        /// Line of the element.
        line: usize,
        /// What is unsupported and what is.
        message: String,
    },
    /// A value holds a character libvirt does not allow there (a newline in a pool name).
    #[error("{path}: invalid char in {what}: {char:?}")]
    IllegalChar {
        /// Element path.
        path: String,
        /// What the value is.
        what: &'static str,
        /// The character.
        char: char,
    },
    /// An element libvirt's schema does not allow where it is (checked on request only:
    /// libvirt's VALIDATE flags).
    #[error(
        "Unable to validate doc against /usr/share/libvirt/schemas/{schema}\nElement {path} (line {line}) is not allowed here"
    )]
    NotInSchema {
        /// The schema file.
        schema: &'static str,
        /// Element path.
        path: String,
        /// Line of the element.
        line: usize,
    },
}

/// Checks a parsed document against a schema given as which child each element may have:
/// the root must be `root`, and the first child `allowed(parent, child)` refuses is named.
pub(crate) fn check_schema(
    top: &Element,
    root: &str,
    schema: &'static str,
    allowed: &dyn Fn(&Element, &Element) -> bool,
) -> Result<(), Error> {
    fn walk(
        el: &Element,
        schema: &'static str,
        allowed: &dyn Fn(&Element, &Element) -> bool,
    ) -> Result<(), Error> {
        for child in &el.children {
            if !allowed(el, child) {
                return Err(Error::NotInSchema {
                    schema,
                    path: child.path.clone(),
                    line: child.line,
                });
            }
            walk(child, schema, allowed)?;
        }
        Ok(())
    }
    if top.name != root || !top.is_plain() {
        return Err(Error::NotInSchema {
            schema,
            path: top.path.clone(),
            line: top.line,
        });
    }
    walk(top, schema, allowed)
}

/// One XML attribute, with its namespace resolved.
#[derive(Debug, Clone)]
pub(crate) struct Attr {
    /// Namespace URI, if the attribute name has a prefix.
    pub ns: Option<String>,
    /// Local name.
    pub name: String,
    /// Unescaped value.
    pub value: String,
}

/// One XML element with its children, namespace resolved, text concatenated.
#[derive(Debug, Clone)]
pub(crate) struct Element {
    /// Namespace URI, if any.
    pub ns: Option<String>,
    /// Local name.
    pub name: String,
    /// Attributes in document order (namespace declarations excluded).
    pub attrs: Vec<Attr>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Text directly inside the element (all text nodes concatenated, entities resolved).
    pub text: String,
    /// 1-based line where the element starts.
    pub line: usize,
    /// Path from the root, e.g. `/volume/target/format`.
    pub path: String,
}

/// Largest document accepted (libvirt XML documents are small; this bounds memory).
const MAX_DOCUMENT_BYTES: usize = 4 << 20;
/// Deepest element nesting accepted.
const MAX_DEPTH: usize = 64;

fn line_of(src: &str, byte_pos: u64) -> usize {
    src.as_bytes()[..position(byte_pos, src)]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Element {
    /// Parses a whole document and returns its root element.
    pub(crate) fn parse(src: &str) -> Result<Element, Error> {
        if src.len() > MAX_DOCUMENT_BYTES {
            return Err(Error::Malformed {
                line: 1,
                message: format!("document is larger than {MAX_DOCUMENT_BYTES} bytes"),
            });
        }
        let mut reader = NsReader::from_str(src);
        // XML forbids `--` inside comments; quick-xml checks that only when asked.
        reader.config_mut().check_comments = true;
        let mut stack: Vec<Element> = Vec::new();
        let mut root: Option<Element> = None;
        loop {
            let pos_before = reader.buffer_position();
            let malformed = |reader: &NsReader<&[u8]>, message: String| Error::Malformed {
                line: line_of(src, reader.error_position().max(pos_before)),
                message,
            };
            let (resolved, event) = match reader.read_resolved_event() {
                Ok((ResolveResult::Unknown(prefix), _)) => {
                    return Err(malformed(&reader, undeclared_prefix(&prefix)));
                }
                Ok((ns, ev)) => (resolve_ns(ns), ev),
                Err(e) => return Err(malformed(&reader, e.to_string())),
            };
            let (start, is_empty) = match event {
                Event::Start(start) => (start, false),
                Event::Empty(start) => (start, true),
                Event::End(_) => {
                    close(&mut stack, &mut root);
                    continue;
                }
                Event::Text(text) => {
                    if text.contains("]]>") {
                        return Err(malformed(&reader, "']]>' is not allowed in text".into()));
                    }
                    let content = text.xml10_content();
                    push_text(&mut stack, &content).map_err(|m| malformed(&reader, m))?;
                    continue;
                }
                Event::CData(cdata) => {
                    let content = cdata.into_inner().into_owned();
                    push_text(&mut stack, &content).map_err(|m| malformed(&reader, m))?;
                    continue;
                }
                Event::GeneralRef(reference) => {
                    let text = match reference.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => {
                            let name = reference.xml10_content();
                            match quick_xml::escape::resolve_predefined_entity(&name) {
                                Some(s) => s.to_string(),
                                None => {
                                    return Err(malformed(
                                        &reader,
                                        format!("unknown entity '&{name};'"),
                                    ));
                                }
                            }
                        }
                        Err(e) => return Err(malformed(&reader, e.to_string())),
                    };
                    push_text(&mut stack, &text).map_err(|m| malformed(&reader, m))?;
                    continue;
                }
                Event::DocType(_) => {
                    return Err(malformed(
                        &reader,
                        "document type declarations are not accepted".into(),
                    ));
                }
                Event::Decl(_)
                    if !src
                        .get(..position(pos_before, src))
                        .is_some_and(|before| before.trim_start_matches('\u{feff}').is_empty()) =>
                {
                    return Err(malformed(
                        &reader,
                        "the XML declaration is allowed only at the start of the document".into(),
                    ));
                }
                // quick-xml finds `--` inside a comment, not a comment that ends in `-`
                // (`<!-- x --->`), which XML forbids as well.
                Event::Comment(comment) if comment.ends_with('-') => {
                    return Err(malformed(&reader, "a comment must not end with '-'".into()));
                }
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => continue,
                Event::Eof => break,
            };
            if root.is_some() {
                return Err(malformed(&reader, "content after the root element".into()));
            }
            if stack.len() >= MAX_DEPTH {
                return Err(malformed(
                    &reader,
                    format!("elements nested deeper than {MAX_DEPTH}"),
                ));
            }
            check_name(start.name().as_ref()).map_err(|m| malformed(&reader, m))?;
            let name = start.local_name().as_ref().to_string();
            let mut attrs = Vec::new();
            for attr in start.attributes() {
                let attr = attr.map_err(|e| malformed(&reader, e.to_string()))?;
                check_name(attr.key.as_ref()).map_err(|m| malformed(&reader, m))?;
                if attr.value.contains('<') {
                    return Err(malformed(
                        &reader,
                        "'<' is not allowed in attribute values".into(),
                    ));
                }
                if attr.key.as_namespace_binding().is_some() {
                    continue;
                }
                let (ans, local) = reader.resolver().resolve_attribute(attr.key);
                if let ResolveResult::Unknown(prefix) = ans {
                    return Err(malformed(&reader, undeclared_prefix(&prefix)));
                }
                let value = attr
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|e| malformed(&reader, e.to_string()))?
                    .into_owned();
                check_chars(&value).map_err(|m| malformed(&reader, m))?;
                attrs.push(Attr {
                    ns: resolve_ns(ans),
                    name: local.as_ref().to_string(),
                    value,
                });
            }
            let parent_path = stack.last().map_or("", |p| p.path.as_str());
            stack.push(Element {
                ns: resolved,
                path: format!("{parent_path}/{name}"),
                name,
                attrs,
                children: Vec::new(),
                text: String::new(),
                line: line_of(src, pos_before),
            });
            if is_empty {
                close(&mut stack, &mut root);
            }
        }
        if let Some(open) = stack.last() {
            return Err(Error::Malformed {
                line: line_of(src, src.len() as u64),
                message: format!("element <{}> is not closed", open.name),
            });
        }
        root.ok_or(Error::Malformed {
            line: 1,
            message: "the document has no root element".into(),
        })
    }
}

/// `byte_pos` as an index into `src`.
fn position(byte_pos: u64, src: &str) -> usize {
    usize::try_from(byte_pos)
        .unwrap_or(src.len())
        .min(src.len())
}

fn undeclared_prefix(prefix: &str) -> String {
    format!("namespace prefix '{prefix}' is not declared")
}

/// Checks an element or attribute name (with its prefix) against XML's Name production,
/// approximately: every non-ASCII character is taken as a name character.
fn check_name(name: &str) -> Result<(), String> {
    let start_ok = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':' || !c.is_ascii();
    let rest_ok = |c: char| start_ok(c) || c.is_ascii_digit() || c == '-' || c == '.';
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if start_ok(first) && chars.all(rest_ok) => Ok(()),
        _ => Err(format!("'{name}' is not a valid XML name")),
    }
}

/// Refuses characters that XML 1.0 does not allow anywhere in a document (its `Char`
/// production): control characters other than tab, newline and carriage return, and
/// U+FFFE / U+FFFF.
fn check_chars(text: &str) -> Result<(), String> {
    match text.chars().find(|&c| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}' || c == '\u{ffff}'
    }) {
        Some(c) => Err(format!(
            "character U+{:04X} is not allowed in XML",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

fn resolve_ns(ns: ResolveResult<'_>) -> Option<String> {
    match ns {
        ResolveResult::Bound(ns) => Some(ns.as_ref().to_string()),
        ResolveResult::Unbound | ResolveResult::Unknown(_) => None,
    }
}

/// Appends text to the innermost open element; text outside the root must be blank.
fn push_text(stack: &mut [Element], text: &str) -> Result<(), String> {
    check_chars(text)?;
    match stack.last_mut() {
        Some(top) => {
            top.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err("text outside the root element".into()),
    }
}

/// Pops the innermost element and attaches it to its parent (or makes it the root).
fn close(stack: &mut Vec<Element>, root: &mut Option<Element>) {
    if let Some(done) = stack.pop() {
        match stack.last_mut() {
            Some(parent) => parent.children.push(done),
            None => *root = Some(done),
        }
    }
}

impl Element {
    /// True when the element is in no namespace (libvirt's own elements).
    pub(crate) fn is_plain(&self) -> bool {
        self.ns.is_none()
    }

    /// The first child in no namespace with this local name.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.is_plain() && c.name == name)
    }

    /// Children in namespace `ns`.
    pub(crate) fn children_in<'a>(&'a self, ns: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children
            .iter()
            .filter(move |c| c.ns.as_deref() == Some(ns))
    }

    /// Value of the attribute in no namespace with this name.
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_none() && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// Path of one of this element's attributes, for messages.
    pub(crate) fn attr_path(&self, name: &str) -> String {
        format!("{}/@{name}", self.path)
    }

    /// An error about this element's value.
    pub(crate) fn bad_value(&self, message: impl Into<String>) -> Error {
        Error::BadValue {
            path: self.path.clone(),
            line: self.line,
            message: message.into(),
        }
    }

    /// An error about one of this element's attributes.
    pub(crate) fn bad_attr(&self, attr: &str, message: impl Into<String>) -> Error {
        Error::BadValue {
            path: self.attr_path(attr),
            line: self.line,
            message: message.into(),
        }
    }

    /// An "unsupported" error about this element.
    pub(crate) fn unsupported(&self, message: impl Into<String>) -> Error {
        Error::Unsupported {
            path: self.path.clone(),
            line: self.line,
            message: message.into(),
        }
    }

    /// Reads a libvirt scaled integer: the text and the `unit` attribute.
    pub(crate) fn scaled(&self) -> Result<u64, Error> {
        crate::units::parse_scaled(&self.text, self.attr("unit")).map_err(|source| Error::BadSize {
            path: self.path.clone(),
            line: self.line,
            source,
        })
    }

    /// The element's text with surrounding whitespace removed.
    pub(crate) fn trimmed(&self) -> &str {
        self.text.trim()
    }
}

/// Escapes text for element content or a single-quoted attribute, as libvirt's
/// `virBufferEscapeString` does (`<`, `>`, `&`, `'`, `"`).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            // A parser turns a raw CR into a line feed: as a reference it reads back as CR.
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_resolves_namespaces_and_entities() {
        let doc = "<?xml version='1.0'?>\n<volume>\n  <name>a&amp;b&#x41;</name>\n  <target xmlns:q='urn:qpool:volume:1'>\n    <q:preallocation mode='full'/>\n  </target>\n</volume>\n";
        let root = Element::parse(doc).unwrap();
        assert_eq!(root.name, "volume");
        assert_eq!(root.child("name").unwrap().text, "a&bA");
        let target = root.child("target").unwrap();
        let ext: Vec<_> = target.children_in("urn:qpool:volume:1").collect();
        assert_eq!(ext.len(), 1);
        assert_eq!(ext[0].name, "preallocation");
        assert_eq!(ext[0].attr("mode"), Some("full"));
        assert_eq!(ext[0].line, 5);
        assert_eq!(ext[0].path, "/volume/target/preallocation");
    }

    #[test]
    fn parse_reports_line_of_malformed_xml() {
        let err = Element::parse("<volume>\n<name>x</nam>\n</volume>").unwrap_err();
        assert!(matches!(err, Error::Malformed { line: 2, .. }), "{err}");
    }

    #[test]
    fn parse_refuses_unclosed_root() {
        let err = Element::parse("<volume><name>x</name>").unwrap_err();
        assert!(err.to_string().contains("not closed"), "{err}");
    }

    #[test]
    fn parse_refuses_doctype() {
        let err = Element::parse("<!DOCTYPE v [<!ENTITY x 'y'>]><volume>&x;</volume>").unwrap_err();
        assert!(err.to_string().contains("document type"), "{err}");
    }

    #[test]
    fn parse_refuses_two_roots_and_empty_input() {
        assert!(Element::parse("<a/><b/>").is_err());
        assert!(Element::parse("").is_err());
        assert!(Element::parse("   ").is_err());
    }

    #[test]
    fn parse_refuses_deep_nesting() {
        let doc = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(Element::parse(&doc).is_err());
    }

    #[test]
    fn parse_refuses_ill_formed_documents_that_quick_xml_lets_through() {
        let cases = [
            ("double hyphen in comment", "<v><!-- a -- b --></v>"),
            ("comment ending in a hyphen", "<v><!-- a ---></v>"),
            ("'<' in an attribute value", "<v a='<'/>"),
            ("']]>' in text", "<v>a]]>b</v>"),
            ("control character in text", "<v>a\u{1}b</v>"),
            ("control character reference", "<v>a&#1;b</v>"),
            ("control character in an attribute", "<v a='\u{2}'/>"),
            ("U+FFFF in text", "<v>\u{ffff}</v>"),
            ("undeclared element prefix", "<v><q:x/></v>"),
            ("undeclared attribute prefix", "<v q:a='1'/>"),
            (
                "late XML declaration",
                "<!-- c --><?xml version='1.0'?><v/>",
            ),
            ("element name starting with a digit", "<v><1a/></v>"),
            ("attribute name starting with a hyphen", "<v -a='1'/>"),
        ];
        for (case, doc) in cases {
            let err = Element::parse(doc).expect_err(case);
            assert!(matches!(err, Error::Malformed { .. }), "{case}: {err}");
        }
    }

    #[test]
    fn parse_accepts_what_xml_allows_near_those_limits() {
        let cases = [
            ("hyphens in a comment", "<v><!-- a - b - c --></v>"),
            ("'>' and ']]' in text", "<v>a]]b > c</v>"),
            ("tab, newline and carriage return", "<v a='\t'>\t\n\r</v>"),
            (
                "declaration after a byte order mark",
                "\u{feff}<?xml version='1.0'?><v/>",
            ),
            ("xml: prefix, always declared", "<v xml:lang='en'/>"),
            ("names with digits, dots and hyphens", "<v-1.a _b='1'/>"),
        ];
        for (case, doc) in cases {
            assert!(Element::parse(doc).is_ok(), "{case}");
        }
    }

    #[test]
    fn escape_covers_markup_characters() {
        assert_eq!(escape("a<b>&'\""), "a&lt;b&gt;&amp;&apos;&quot;");
    }
}
